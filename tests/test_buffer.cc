// SPDX-License-Identifier: MIT
// Unit tests for BufferPool, Buffer and OutboundQueue (ringnet/buffer.h): contents survive
// every operation, storage comes from and goes back to the pool, an empty buffer owns no
// memory, the pool's cache is bounded, and the outbound queue keeps order and never moves
// bytes it already holds.
#include <gtest/gtest.h>
#include <ringnet/buffer.h>
#include <sys/uio.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "test_support.h"

namespace ringnet::test {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

// All queued bytes, in gather order.
std::string gathered(const OutboundQueue& q) {
  std::vector<iovec> iov(4096);
  size_t n = q.gather(iov.data(), iov.size());
  std::string out;
  for (size_t i = 0; i < n; ++i) out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  return out;
}

// Address of each of the first `limit` queued bytes.
std::vector<const char*> byte_addresses(const OutboundQueue& q, size_t limit) {
  std::vector<iovec> iov(4096);
  size_t n = q.gather(iov.data(), iov.size());
  std::vector<const char*> out;
  for (size_t i = 0; i < n && out.size() < limit; ++i) {
    const char* base = static_cast<const char*>(iov[i].iov_base);
    for (size_t k = 0; k < iov[i].iov_len && out.size() < limit; ++k) out.push_back(base + k);
  }
  return out;
}

// ---- BufferPool -------------------------------------------------------------------------

TEST(BufferPoolTest, ClassSizeRoundsUpToPowerOfTwoClasses) {
  EXPECT_EQ(BufferPool::class_size(1), 4 * kKiB);
  EXPECT_EQ(BufferPool::class_size(4 * kKiB), 4 * kKiB);
  EXPECT_EQ(BufferPool::class_size(4 * kKiB + 1), 8 * kKiB);
  EXPECT_EQ(BufferPool::class_size(100000), 128 * kKiB);
  EXPECT_EQ(BufferPool::class_size(4 * kMiB), 4 * kMiB);
  EXPECT_GE(BufferPool::class_size(5 * kMiB), 5 * kMiB);
}

TEST(BufferPoolTest, AcquireGivesWholeClassOfUsableMemory) {
  BufferPool pool;
  size_t cap = 0;
  char* p = pool.acquire(5000, &cap);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(cap, 8 * kKiB);
  EXPECT_EQ(pool.outstanding_blocks(), 1u);
  std::memset(p, 0xAB, cap);  // the whole capacity is writable
  pool.release(p, cap);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
}

TEST(BufferPoolTest, ReleasedBlockIsReusedForSameClass) {
  BufferPool pool;
  size_t cap1 = 0;
  char* p1 = pool.acquire(4 * kKiB, &cap1);
  pool.release(p1, cap1);
  EXPECT_EQ(pool.cached_bytes(), cap1);
  size_t cap2 = 0;
  char* p2 = pool.acquire(3000, &cap2);
  EXPECT_EQ(p2, p1);
  EXPECT_EQ(cap2, cap1);
  EXPECT_EQ(pool.cached_bytes(), 0u);
  pool.release(p2, cap2);
}

TEST(BufferPoolTest, CachedBytesStayWithinLimit) {
  const size_t limit = 64 * kKiB;
  BufferPool pool(limit);
  std::vector<std::pair<char*, size_t>> blocks;
  for (int i = 0; i < 64; ++i) {
    size_t cap = 0;
    char* p = pool.acquire(4 * kKiB, &cap);
    ASSERT_NE(p, nullptr);
    blocks.emplace_back(p, cap);
  }
  EXPECT_EQ(pool.outstanding_blocks(), 64u);
  for (auto [p, cap] : blocks) pool.release(p, cap);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
  EXPECT_LE(pool.cached_bytes(), limit);
  EXPECT_GT(pool.cached_bytes(), 0u);
}

TEST(BufferPoolTest, RequestsAboveLargestClassAreNotCached) {
  BufferPool pool;
  size_t cap = 0;
  char* p = pool.acquire(8 * kMiB, &cap);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(cap, 8 * kMiB);
  p[0] = 1;
  p[cap - 1] = 2;
  pool.release(p, cap);
  EXPECT_EQ(pool.cached_bytes(), 0u);
}

// ---- Buffer -----------------------------------------------------------------------------

TEST(BufferTest, EmptyBufferOwnsNoMemory) {
  BufferPool pool;
  Buffer b(&pool);
  EXPECT_EQ(b.capacity(), 0u);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.readable_bytes(), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
}

TEST(BufferTest, AppendThenConsumeKeepsOrder) {
  BufferPool pool;
  Buffer b(&pool);
  b.append("hello ");
  b.append("world");
  EXPECT_EQ(b.view(), "hello world");
  EXPECT_EQ(b.readable_bytes(), 11u);
  EXPECT_EQ(pool.outstanding_blocks(), 1u);
  EXPECT_EQ(b.consume(6), 6u);
  EXPECT_EQ(b.view(), "world");
  EXPECT_EQ(b.consume(100), 5u);  // only what is there
  EXPECT_TRUE(b.empty());
}

TEST(BufferTest, EnsureWritableGrowthKeepsContent) {
  BufferPool pool;
  Buffer b(&pool);
  std::string data = make_payload(3000, 1);
  b.append(data);
  ASSERT_EQ(b.consume(1000), 1000u);
  b.ensure_writable(1 * kMiB);
  EXPECT_GE(b.writable_bytes(), 1 * kMiB);
  EXPECT_TRUE(same_bytes(std::string_view(data).substr(1000), b.view()));
  // Growth again, far beyond the first block.
  std::string more = make_payload(3 * kMiB, 2);
  b.append(more);
  EXPECT_TRUE(same_bytes(data.substr(1000) + more, b.view()));
}

TEST(BufferTest, CommitMakesWrittenBytesReadable) {
  BufferPool pool;
  Buffer b(&pool);
  b.append("head:");
  std::string data = make_payload(10000, 3);
  b.ensure_writable(data.size());
  ASSERT_GE(b.writable_bytes(), data.size());
  std::memcpy(b.write_ptr(), data.data(), data.size());
  b.commit(data.size());
  EXPECT_TRUE(same_bytes("head:" + data, b.view()));
}

TEST(BufferTest, EnsureWritableCompactsWithoutLosingBytes) {
  BufferPool pool;
  Buffer b(&pool);
  b.ensure_writable(1);
  const size_t cap = b.capacity();
  ASSERT_GT(cap, 0u);
  std::string data = make_payload(cap, 4);
  b.append(data);  // exactly full
  ASSERT_EQ(b.consume(cap - 10), cap - 10);
  b.ensure_writable(cap / 2);  // fits once consumed space is reused (or after growth)
  EXPECT_GE(b.writable_bytes(), cap / 2);
  EXPECT_TRUE(same_bytes(std::string_view(data).substr(cap - 10), b.view()));
}

TEST(BufferTest, AppendInPlaceTakesOnlyWhatFits) {
  BufferPool pool;
  Buffer b(&pool);
  b.ensure_writable(1);
  const size_t cap = b.capacity();
  const size_t room = b.writable_bytes();
  ASSERT_GT(room, 0u);
  std::string data = make_payload(room + 500, 5);
  EXPECT_EQ(b.append_in_place(data), room);
  EXPECT_EQ(b.capacity(), cap);  // did not grow
  EXPECT_TRUE(same_bytes(std::string_view(data).substr(0, room), b.view()));
  EXPECT_EQ(b.append_in_place("x"), 0u);  // full now
}

TEST(BufferTest, ReleaseIfEmptyReturnsStorageToPool) {
  BufferPool pool;
  Buffer b(&pool);
  b.append(make_payload(1000, 6));
  ASSERT_EQ(pool.outstanding_blocks(), 1u);
  b.consume(1000);
  b.release_if_empty();
  EXPECT_EQ(b.capacity(), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
  EXPECT_GT(pool.cached_bytes(), 0u);
  // Usable again afterwards.
  b.append("again");
  EXPECT_EQ(b.view(), "again");
}

TEST(BufferTest, ReleaseIfEmptyKeepsUnreadBytes) {
  BufferPool pool;
  Buffer b(&pool);
  b.append("abcdef");
  b.consume(3);
  b.release_if_empty();
  EXPECT_EQ(b.view(), "def");
  EXPECT_GT(b.capacity(), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 1u);
}

TEST(BufferTest, DestructorReturnsStorageToPool) {
  BufferPool pool;
  {
    Buffer b(&pool);
    b.append(make_payload(50000, 7));
    EXPECT_EQ(pool.outstanding_blocks(), 1u);
  }
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
}

TEST(BufferTest, MoveTransfersStorage) {
  BufferPool pool;
  Buffer a(&pool);
  a.append("xyz");
  Buffer b(std::move(a));
  EXPECT_EQ(b.view(), "xyz");
  EXPECT_EQ(a.capacity(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(pool.outstanding_blocks(), 1u);

  Buffer c(&pool);
  c.append("old");
  c = std::move(b);
  EXPECT_EQ(c.view(), "xyz");
  EXPECT_EQ(pool.outstanding_blocks(), 1u);  // c's old storage went back
}

TEST(BufferTest, WorksWithoutPool) {
  Buffer b(nullptr);
  std::string data = make_payload(100 * kKiB, 8);
  b.append(data);
  EXPECT_TRUE(same_bytes(data, b.view()));
  b.consume(data.size());
  b.release_if_empty();
  EXPECT_EQ(b.capacity(), 0u);
}

TEST(BufferTest, RandomOperationsMatchModel) {
  BufferPool pool;
  Buffer b(&pool);
  std::string model;
  std::mt19937_64 rng(42);
  for (int op = 0; op < 3000; ++op) {
    switch (rng() % 4) {
      case 0: {
        std::string s = make_payload(rng() % (20 * kKiB), op);
        b.append(s);
        model += s;
        break;
      }
      case 1: {
        size_t n = model.empty() ? 0 : rng() % (model.size() + 10);
        size_t dropped = b.consume(n);
        ASSERT_EQ(dropped, std::min(n, model.size()));
        model.erase(0, dropped);
        break;
      }
      case 2: {
        size_t n = rng() % 5000;
        std::string s = make_payload(n, op + 100000);
        b.ensure_writable(n);
        ASSERT_GE(b.writable_bytes(), n);
        std::memcpy(b.write_ptr(), s.data(), n);
        b.commit(n);
        model += s;
        break;
      }
      case 3:
        b.release_if_empty();
        if (model.empty()) {
          ASSERT_EQ(b.capacity(), 0u);
        }
        break;
    }
    ASSERT_EQ(b.readable_bytes(), model.size()) << "after op " << op;
    ASSERT_TRUE(same_bytes(model, b.view())) << "after op " << op;
  }
}

// ---- OutboundQueue ------------------------------------------------------------------------

TEST(OutboundQueueTest, EmptyQueueGathersNothing) {
  BufferPool pool;
  OutboundQueue q(&pool);
  iovec iov[4];
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.gather(iov, 4), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
}

TEST(OutboundQueueTest, GatherKeepsAppendOrder) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string model;
  for (int i = 0; i < 500; ++i) {
    std::string piece = "msg" + std::to_string(i) + ";";
    q.append(piece);
    model += piece;
  }
  EXPECT_EQ(q.size(), model.size());
  EXPECT_TRUE(same_bytes(model, gathered(q)));
}

TEST(OutboundQueueTest, AppendLargerThanBlockSpansBlocksInOrder) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string model;
  for (size_t size : {size_t{10}, 40 * kKiB, size_t{5}, 70 * kKiB, OutboundQueue::kBlockSize,
                      size_t{1}, 1 * kMiB + 3}) {
    std::string s = make_payload(size, size);
    q.append(s);
    model += s;
  }
  EXPECT_EQ(q.size(), model.size());
  EXPECT_TRUE(same_bytes(model, gathered(q)));
}

// A connection slot lives as long as its loop and its queue is reused by every connection
// the slot serves: a queue that drained (or was cleared at close) must hold no memory, or
// an idle slot keeps what its worst queue grew to (the soak once saw the heap grow
// 42 -> 70 MiB over ten rounds), and every idle connection pays for an empty list.
TEST(OutboundQueueTest, AnEmptiedQueueHoldsNoMemory) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string piece = make_payload(OutboundQueue::kBlockSize, 3);
  for (int i = 0; i < 200; ++i) q.append(piece);
  ASSERT_GT(q.block_count(), 100u);
  q.consume(q.size() - 1);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.block_count(), 1u);
  EXPECT_EQ(pool.outstanding_blocks(), 1u);
  q.consume(1);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.block_count(), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);

  for (int i = 0; i < 200; ++i) q.append(piece);
  q.clear();  // a slot freed with its output unsent
  EXPECT_EQ(q.block_count(), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);

  // A small reply takes one block of the smallest class, its header included.
  q.append("a");
  EXPECT_EQ(q.block_count(), 1u);
  q.append(make_payload(3 * OutboundQueue::kBlockSize, 4));
  q.consume(q.size());
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
  // And the queue still works after emptying.
  q.append("xyz");
  EXPECT_TRUE(same_bytes("xyz", gathered(q)));
}

// Without a pool the blocks come from malloc and go back to free (ASan checks the pairs).
TEST(OutboundQueueTest, WorksWithoutPool) {
  OutboundQueue q(nullptr);
  std::string model;
  for (size_t size : {size_t{1}, size_t{5000}, 3 * OutboundQueue::kBlockSize, size_t{7}}) {
    std::string s = make_payload(size, size);
    q.append(s);
    model += s;
  }
  EXPECT_TRUE(same_bytes(model, gathered(q)));
  q.consume(4000);
  model.erase(0, 4000);
  EXPECT_TRUE(same_bytes(model, gathered(q)));
  OutboundQueue moved(std::move(q));
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(same_bytes(model, gathered(moved)));
}

TEST(OutboundQueueTest, AppendNeverMovesQueuedBytes) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string first = make_payload(20 * kKiB + 7, 11);
  q.append(first);
  std::vector<const char*> before = byte_addresses(q, first.size());
  ASSERT_EQ(before.size(), first.size());
  for (int i = 0; i < 8; ++i) q.append(make_payload(100 * kKiB + i, 12 + i));
  std::vector<const char*> after = byte_addresses(q, first.size());
  ASSERT_EQ(after.size(), first.size());
  size_t moved = 0;
  for (size_t k = 0; k < first.size(); ++k) moved += before[k] != after[k];
  EXPECT_EQ(moved, 0u) << "queued bytes changed address after later appends";
  EXPECT_EQ(std::memcmp(before[0], first.data(), 1), 0);
  EXPECT_TRUE(same_bytes(first, gathered(q).substr(0, first.size())));
}

TEST(OutboundQueueTest, ConsumeAcrossBlocksKeepsRemainder) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string model;
  for (int i = 0; i < 3; ++i) {
    std::string s = make_payload(20 * kKiB, 20 + i);
    q.append(s);
    model += s;
  }
  q.consume(30 * kKiB + 1);
  model.erase(0, 30 * kKiB + 1);
  EXPECT_EQ(q.size(), model.size());
  EXPECT_TRUE(same_bytes(model, gathered(q)));
  q.consume(model.size());
  EXPECT_TRUE(q.empty());
  iovec iov[4];
  EXPECT_EQ(q.gather(iov, 4), 0u);
}

TEST(OutboundQueueTest, DrainedBlocksGoBackToPool) {
  BufferPool pool;
  OutboundQueue q(&pool);
  q.append(make_payload(64 * kKiB, 30));
  EXPECT_GE(pool.outstanding_blocks(), 1u);
  q.consume(48 * kKiB);
  EXPECT_LE(pool.outstanding_blocks(), 2u);  // at most the blocks holding the last 16 KiB
  q.consume(16 * kKiB);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
}

TEST(OutboundQueueTest, GatherRespectsMaxIov) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string model;
  for (int i = 0; i < 10; ++i) {
    std::string s = make_payload(OutboundQueue::kBlockSize, 40 + i);
    q.append(s);
    model += s;
  }
  iovec iov[2];
  EXPECT_EQ(q.gather(iov, 0), 0u);
  size_t n = q.gather(iov, 2);
  ASSERT_GE(n, 1u);
  ASSERT_LE(n, 2u);
  std::string prefix;
  for (size_t i = 0; i < n; ++i) prefix.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  EXPECT_TRUE(same_bytes(std::string_view(model).substr(0, prefix.size()), prefix));
}

TEST(OutboundQueueTest, ClearDropsEverythingAndReturnsBlocks) {
  BufferPool pool;
  OutboundQueue q(&pool);
  q.append(make_payload(50 * kKiB, 50));
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
  q.append("after clear");
  EXPECT_EQ(gathered(q), "after clear");
}

TEST(OutboundQueueTest, RandomAppendConsumeMatchesModel) {
  BufferPool pool;
  OutboundQueue q(&pool);
  std::string model;
  std::mt19937_64 rng(7);
  for (int op = 0; op < 2000; ++op) {
    if (rng() % 3 != 0) {
      size_t n = (rng() % 4 == 0) ? rng() % (64 * kKiB) : rng() % 300;
      std::string s = make_payload(n, op);
      q.append(s);
      model += s;
    } else if (!model.empty()) {
      size_t n = rng() % (model.size() + 1);
      q.consume(n);
      model.erase(0, n);
    }
    ASSERT_EQ(q.size(), model.size()) << "after op " << op;
    if (op % 50 == 0) {
      ASSERT_TRUE(same_bytes(model, gathered(q))) << "after op " << op;
    }
  }
  ASSERT_TRUE(same_bytes(model, gathered(q)));
  q.consume(model.size());
  EXPECT_EQ(pool.outstanding_blocks(), 0u);
}

}  // namespace
}  // namespace ringnet::test

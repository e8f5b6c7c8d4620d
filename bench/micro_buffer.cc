// SPDX-License-Identifier: MIT
// Micro-benchmarks of the engine's buffer code (<ringnet/buffer.h>): the per-message costs
// the echo path pays on every read and every flush, next to plain malloc/free for scale.
//
//   build/bench/micro_buffer                       # all
//   build/bench/micro_buffer --benchmark_filter=Outbound
//
// Sizes: 64 B (small RPC), 1 KiB, 16 KiB (one OutboundQueue block).
#include <benchmark/benchmark.h>
#include <ringnet/buffer.h>
#include <sys/uio.h>

#include <array>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using ringnet::Buffer;
using ringnet::BufferPool;
using ringnet::OutboundQueue;

void sizes(benchmark::internal::Benchmark* b) {
  b->Arg(64)->Arg(1024)->Arg(16 * 1024);
}

std::string payload(size_t n) { return std::string(n, 'x'); }

// A warm pool hands back the block it just took: the steady state of a busy loop.
void BM_PoolAcquireRelease(benchmark::State& state) {
  BufferPool pool;
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    size_t cap = 0;
    char* p = pool.acquire(size, &cap);
    benchmark::DoNotOptimize(p);
    pool.release(p, cap);
  }
}
BENCHMARK(BM_PoolAcquireRelease)->Apply(sizes);

// What the pool saves us from, at the same sizes.
void BM_MallocFree(benchmark::State& state) {
  const size_t size = BufferPool::class_size(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    void* p = std::malloc(size);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
}
BENCHMARK(BM_MallocFree)->Apply(sizes);

// A connection that stays busy: storage is kept between messages.
void BM_BufferAppendConsume(benchmark::State& state) {
  BufferPool pool;
  Buffer buf(&pool);
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    buf.append(msg);
    benchmark::DoNotOptimize(buf.read_ptr());
    buf.consume(msg.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_BufferAppendConsume)->Apply(sizes);

// A connection that goes idle after each message and gives its storage back, as the
// engine does so idle connections hold no buffer: adds one pool round trip per message.
void BM_BufferAppendConsumeRelease(benchmark::State& state) {
  BufferPool pool;
  Buffer buf(&pool);
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    buf.append(msg);
    benchmark::DoNotOptimize(buf.read_ptr());
    buf.consume(msg.size());
    buf.release_if_empty();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_BufferAppendConsumeRelease)->Apply(sizes);

// One write and one flush per message: append, gather the iovecs, consume what was "sent".
void BM_OutboundQueueAppendGatherConsume(benchmark::State& state) {
  BufferPool pool;
  OutboundQueue q(&pool);
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  std::array<iovec, 64> iov;
  for (auto _ : state) {
    q.append(msg);
    size_t n = q.gather(iov.data(), iov.size());
    benchmark::DoNotOptimize(n);
    q.consume(q.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
}
BENCHMARK(BM_OutboundQueueAppendGatherConsume)->Apply(sizes);

// Many small writes coalesced into one flush (pipelined replies): range(0) writes of 64 B.
void BM_OutboundQueueBatchedFlush(benchmark::State& state) {
  BufferPool pool;
  OutboundQueue q(&pool);
  const std::string msg = payload(64);
  const int64_t writes = state.range(0);
  std::array<iovec, 64> iov;
  for (auto _ : state) {
    for (int64_t i = 0; i < writes; ++i) q.append(msg);
    size_t n = q.gather(iov.data(), iov.size());
    benchmark::DoNotOptimize(n);
    q.consume(q.size());
  }
  state.SetItemsProcessed(state.iterations() * writes);
}
BENCHMARK(BM_OutboundQueueBatchedFlush)->Arg(1)->Arg(16)->Arg(256);

}  // namespace

BENCHMARK_MAIN();

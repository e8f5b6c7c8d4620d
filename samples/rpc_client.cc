// rpc_client: drives rpc_echo (or any server of the RPC frame) over one connection with
// several calls in flight, and checks every answer.
//
//   rpc_client [--host 127.0.0.1] [--port 9000] [--unix PATH] [--calls 10000]
//              [--window 16] [--size 100] [--method 1|2]
//
// Keeps `window` requests outstanding on one connection (ids 1, 2, 3, ...). Each answer
// must be a response to an outstanding id, carrying that id's method and the expected
// body: the request body for method 1 (echo), the reversed body for method 2 (reverse).
// Answers may come in any order. Prints one line
//   calls=N ok=N errors=N calls_per_sec=N p50_us=N p99_us=N
// and exits 0 only when every call was answered correctly; 1 on any mismatch, error frame,
// early close or 10 s without progress; 2 on bad arguments.
//
// A plain POSIX socket: poll() for readiness, send/recv with MSG_DONTWAIT, so requests are
// written while answers are read and neither side can block the other on full buffers.
// Public headers only; the codec encodes requests and decodes answers.
#include <ringnet/proto/codec.h>
#include <ringnet/proto/rpc_frame.h>

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

using ringnet::proto::Decoded;
using ringnet::proto::RpcFrame;
using ringnet::proto::RpcFrameCodec;
using ringnet::proto::RpcType;
using Clock = std::chrono::steady_clock;

constexpr int kIdleTimeoutMs = 10000;

struct Args {
  std::string host = "127.0.0.1";
  std::string port = "9000";
  std::string unix_path;
  uint64_t calls = 10000;
  uint64_t window = 16;
  uint64_t size = 100;
  uint16_t method = 1;
};

[[noreturn]] void usage(const char* bad) {
  std::fprintf(stderr,
               "rpc_client: bad argument '%s'\n"
               "usage: rpc_client [--host H] [--port N] [--unix PATH] [--calls N] "
               "[--window W] [--size BYTES] [--method 1|2]\n",
               bad);
  std::exit(2);
}

// Decimal, by hand, within [lo, hi].
uint64_t parse_number(const char* text, uint64_t lo, uint64_t hi) {
  uint64_t v = 0;
  if (*text == '\0') usage(text);
  for (const char* p = text; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') usage(text);
    v = v * 10 + static_cast<uint64_t>(*p - '0');
    if (v > hi) usage(text);
  }
  if (v < lo) usage(text);
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) usage(argv[i]);
    const char* value = argv[++i];
    if (flag == "--host") a.host = value;
    else if (flag == "--port") a.port = std::to_string(parse_number(value, 1, 65535));
    else if (flag == "--unix") a.unix_path = value;
    else if (flag == "--calls") a.calls = parse_number(value, 1, 1'000'000'000);
    else if (flag == "--window") a.window = parse_number(value, 1, 1'000'000);
    else if (flag == "--size") a.size = parse_number(value, 0, 0xFFFFFFFF);
    else if (flag == "--method") a.method = static_cast<uint16_t>(parse_number(value, 1, 2));
    else usage(argv[i - 1]);
  }
  return a;
}

int connect_to(const Args& a) {
  if (!a.unix_path.empty()) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (a.unix_path.size() >= sizeof(sun.sun_path)) return -1;
    std::memcpy(sun.sun_path, a.unix_path.data(), a.unix_path.size());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (int rc = ::getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &list); rc != 0) {
    std::fprintf(stderr, "rpc_client: %s: %s\n", a.host.c_str(), gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = list; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(list);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return fd;
}

// The body of call `id`: deterministic, so an answer is checked without keeping a copy.
char body_byte(uint64_t id, uint64_t i) {
  return static_cast<char>((id * 131 + i * 7 + (i >> 8)) & 0xFF);
}

void fill_body(uint64_t id, std::string& body) {
  for (size_t i = 0; i < body.size(); ++i) body[i] = body_byte(id, i);
}

bool body_matches(uint64_t id, uint16_t method, std::string_view body, uint64_t size) {
  if (body.size() != size) return false;
  for (size_t i = 0; i < body.size(); ++i) {
    const uint64_t source = method == 2 ? size - 1 - i : i;  // reverse: read from the end
    if (body[i] != body_byte(id, source)) return false;
  }
  return true;
}

class Caller {
 public:
  Caller(const Args& args, int fd)
      : args_(args),
        fd_(fd),
        // Accept answers as large as our own requests, and never less than the default.
        codec_(ringnet::proto::RpcFrameOptions{
            .min_body = 0,
            .max_body = static_cast<uint32_t>(
                std::max<uint64_t>(args.size, ringnet::proto::kRpcDefaultMaxBody))}),
        body_(args.size, '\0') {
    latencies_us_.reserve(args.calls);
  }

  // Runs every call; false on the first failure (already reported on stderr).
  bool run() {
    for (;;) {
      while (next_id_ <= args_.calls && in_flight_.size() < args_.window) queue_request();
      if (answered_ == args_.calls) return true;
      pollfd p{fd_, POLLIN, 0};
      if (out_sent_ < out_.size()) p.events |= POLLOUT;
      int n = ::poll(&p, 1, kIdleTimeoutMs);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(n == 0 ? "no progress for 10 s" : std::strerror(errno));
      if ((p.revents & POLLOUT) != 0 && !send_some()) return false;
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0 && !receive_some()) return false;
    }
  }

  const std::vector<uint32_t>& latencies_us() const { return latencies_us_; }
  uint64_t ok() const { return ok_; }

 private:
  void queue_request() {
    const uint64_t id = next_id_++;
    fill_body(id, body_);
    // Sent bytes are dropped once they are most of the buffer, so it holds about one
    // window and the copies stay small.
    if (out_sent_ > 0 && out_sent_ >= out_.size() / 2) {
      out_.erase(0, out_sent_);
      out_sent_ = 0;
    }
    ringnet::proto::StringSink sink{out_};
    // Cannot fail: the codec's max_body is at least args_.size and the type is valid.
    codec_.encode(RpcFrame{RpcType::kRequest, 0, args_.method, id, body_}, sink).ignore();
    in_flight_.emplace(id, Clock::now());
  }

  bool send_some() {
    while (out_sent_ < out_.size()) {
      ssize_t n = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        out_sent_ += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return true;
      } else {
        return fail(std::strerror(errno));
      }
    }
    return true;
  }

  bool receive_some() {
    char chunk[64 * 1024];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
    if (n < 0) return fail(std::strerror(errno));
    if (n == 0) return fail("server closed the connection");
    in_.append(chunk, static_cast<size_t>(n));

    std::string_view rest = std::string_view(in_).substr(in_read_);
    for (;;) {
      RpcFrame answer;
      Decoded d = codec_.decode(rest, answer);
      if (d.kind == Decoded::kError) return fail(d.error.reason);
      if (d.kind == Decoded::kNeedMore) break;
      if (!check(answer)) return false;
      rest.remove_prefix(d.consumed);
      in_read_ += d.consumed;
    }
    // Drop what was decoded once it is most of the buffer, so copies stay small.
    if (in_read_ > in_.size() / 2) {
      in_.erase(0, in_read_);
      in_read_ = 0;
    }
    return true;
  }

  bool check(const RpcFrame& answer) {
    auto it = in_flight_.find(answer.request_id);
    if (it == in_flight_.end()) {
      std::fprintf(stderr, "rpc_client: answer to id %" PRIu64 " which is not in flight\n",
                   answer.request_id);
      return false;
    }
    const auto elapsed = Clock::now() - it->second;
    in_flight_.erase(it);
    ++answered_;
    if (answer.type != RpcType::kResponse) {
      std::fprintf(stderr, "rpc_client: id %" PRIu64 ": %s frame: %.*s\n", answer.request_id,
                   ringnet::proto::rpc_type_name(answer.type),
                   static_cast<int>(std::min<size_t>(answer.body.size(), 200)),
                   answer.body.data());
      return false;
    }
    if (answer.method != args_.method ||
        !body_matches(answer.request_id, args_.method, answer.body, args_.size)) {
      std::fprintf(stderr, "rpc_client: id %" PRIu64 ": wrong method or body (%zu bytes)\n",
                   answer.request_id, answer.body.size());
      return false;
    }
    ++ok_;
    latencies_us_.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
    return true;
  }

  bool fail(const char* why) {
    std::fprintf(stderr, "rpc_client: %s (after %" PRIu64 " answers)\n", why, answered_);
    return false;
  }

  const Args& args_;
  int fd_;
  RpcFrameCodec codec_;
  std::string body_;  // the request body being encoded
  std::string out_;   // encoded requests; bytes before out_sent_ are on the wire
  size_t out_sent_ = 0;
  std::string in_;    // received bytes; bytes before in_read_ are decoded
  size_t in_read_ = 0;
  std::unordered_map<uint64_t, Clock::time_point> in_flight_;  // id -> sent at
  uint64_t next_id_ = 1;
  uint64_t answered_ = 0;
  uint64_t ok_ = 0;
  std::vector<uint32_t> latencies_us_;
};

uint32_t percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  const int fd = connect_to(args);
  if (fd < 0) {
    std::fprintf(stderr, "rpc_client: cannot connect: %s\n", std::strerror(errno));
    return 1;
  }
  Caller caller(args, fd);
  const auto start = Clock::now();
  const bool all_ok = caller.run();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);

  std::vector<uint32_t> lat = caller.latencies_us();
  const uint64_t errors = args.calls - caller.ok();
  std::printf("calls=%" PRIu64 " ok=%" PRIu64 " errors=%" PRIu64
              " calls_per_sec=%.0f p50_us=%u p99_us=%u\n",
              args.calls, caller.ok(), errors,
              seconds > 0 ? static_cast<double>(caller.ok()) / seconds : 0.0,
              percentile(lat, 0.50), percentile(lat, 0.99));
  return all_ok && errors == 0 ? 0 : 1;
}

// SPDX-License-Identifier: MIT
// Metrics and the admin listener, over real sockets on both backends: /metrics parses as
// Prometheus text and its counters match what the test did (connections, bytes, sends,
// closes by reason, histogram sums); /healthz turns 503 once a drain begins; the admin
// listener answers bad requests clearly; with Options::metrics off the histograms are gone
// and the counters stay. Plus the writer and the Log2Histogram on their own.
#include <gtest/gtest.h>
#include <ringnet/metrics.h>
#include <ringnet/worker_pool.h>

#include <string>
#include <thread>
#include <vector>

#include "prometheus_text.h"
#include "test_support.h"

namespace ringnet::test {
namespace {

struct HttpAnswer {
  int status = 0;
  std::string head;
  std::string body;
};

// One request on a fresh connection to the admin listener; the server closes after it.
testing::AssertionResult admin_get(const Engine& engine, std::string_view request,
                                   HttpAnswer* out) {
  Client c;
  if (auto r = c.connect(engine.admin_addr()); !r) return r;
  if (auto r = c.send_all(request); !r) return r;
  std::string raw;
  if (auto r = c.recv_until_eof(&raw); !r) return r;
  size_t end = raw.find("\r\n\r\n");
  if (raw.substr(0, 9) != "HTTP/1.1 " || end == std::string::npos) {
    return testing::AssertionFailure() << "not an HTTP answer: " << raw.substr(0, 200);
  }
  out->status = std::stoi(raw.substr(9, 3));
  out->head = raw.substr(0, end);
  out->body = raw.substr(end + 4);
  size_t cl = out->head.find("Content-Length: ");
  if (cl == std::string::npos) return testing::AssertionFailure() << "no Content-Length";
  size_t length = std::stoul(out->head.substr(cl + 16));
  bool head_request = request.substr(0, 5) == "HEAD ";
  if (!head_request && length != out->body.size()) {
    return testing::AssertionFailure() << "Content-Length " << length << " but "
                                       << out->body.size() << " body bytes";
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult scrape(const Engine& engine, Scrape* out) {
  HttpAnswer a;
  if (auto r = admin_get(engine, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n", &a); !r) return r;
  if (a.status != 200) return testing::AssertionFailure() << "status " << a.status;
  if (a.head.find("Content-Type: text/plain; version=0.0.4") == std::string::npos) {
    return testing::AssertionFailure() << "wrong content type: " << a.head;
  }
  return parse_prometheus(a.body, out);
}

class MetricsTest : public testing::TestWithParam<Backend> {};

TEST_P(MetricsTest, CountersMatchWhatTheClientsDid) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam(), 2));
  ASSERT_TRUE(server.engine().listen_admin("tcp://127.0.0.1:0"));
  std::atomic<uint64_t> app_requests{42};
  server.engine().add_metrics([&](MetricsWriter& w) {
    w.family("test_app_requests_total", MetricType::kCounter, "Requests the app saw.");
    w.value("kind=\"a \\\"quoted\\\" one\"", app_requests.load());
  });
  ASSERT_TRUE(server.start());
  ASSERT_NE(server.engine().admin_addr().port(), 0);

  constexpr size_t kConns = 8, kMessages = 50, kSize = 100;
  std::vector<Client> clients;
  ASSERT_TRUE(connect_many(server.port(), kConns, &clients));
  for (size_t m = 0; m < kMessages; ++m) {
    for (size_t i = 0; i < kConns; ++i) {
      ASSERT_TRUE(clients[i].echo(make_payload(kSize, i * 1000 + m)));  // ping-pong
    }
  }
  for (Client& c : clients) c.close();
  ASSERT_TRUE(handler.wait_closes(kConns));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().open == 0; }, 5000ms));

  Scrape s;
  ASSERT_TRUE(scrape(server.engine(), &s));
  const double bytes = double(kConns * kMessages * kSize);
  EXPECT_EQ(s.sum("ringnet_connections_accepted_total"), kConns);
  EXPECT_EQ(s.series("ringnet_connections_accepted_total"), 2u);  // one per loop
  EXPECT_EQ(s.sum("ringnet_connections_open"), 0);
  EXPECT_EQ(s.sum("ringnet_connections_closed_total", {"reason=\"peer_closed\""}), kConns);
  EXPECT_EQ(s.sum("ringnet_connections_closed_total"), kConns);  // no other reason
  EXPECT_EQ(s.sum("ringnet_received_bytes_total"), bytes);
  EXPECT_EQ(s.sum("ringnet_sent_bytes_total"), bytes);
  // Ping-pong: every message needed its own on_traffic, and the echo writes once per call.
  const double traffic = s.sum("ringnet_traffic_callbacks_total");
  EXPECT_GE(traffic, double(kConns * kMessages));
  EXPECT_EQ(s.sum("ringnet_conn_writes_total"), traffic);
  // Every send is in the flush histogram, with its bytes.
  EXPECT_EQ(s.sum("ringnet_flush_bytes_sum"), bytes);
  EXPECT_EQ(s.sum("ringnet_flush_bytes_count"), s.sum("ringnet_send_calls_total"));
  // One busy time and one batch size per loop iteration; each message woke a loop.
  for (const char* loop : {"loop=\"0\"", "loop=\"1\""}) {
    EXPECT_EQ(s.sum("ringnet_loop_busy_seconds_count", {loop}),
              s.sum("ringnet_loop_batch_events_count", {loop}))
        << loop;
  }
  EXPECT_GE(s.sum("ringnet_loop_batch_events_sum"), double(kConns * kMessages));
  EXPECT_GT(s.sum("ringnet_loop_busy_seconds_sum"), 0.0);
  EXPECT_EQ(s.sum("ringnet_stopping"), 0);
  EXPECT_EQ(s.sum("ringnet_info", {"backend=\"" + backend_label(server.engine().options().backend) + "\""}), 1);
  EXPECT_EQ(s.samples.at("test_app_requests_total{kind=\"a \\\"quoted\\\" one\"}"), 42);
  EXPECT_EQ(s.types.at("ringnet_loop_busy_seconds"), "histogram");
  EXPECT_EQ(s.types.at("ringnet_connections_open"), "gauge");
  for (const auto& [family, type] : s.types) {  // the naming convention
    if (type == "counter") {
      EXPECT_TRUE(family.ends_with("_total")) << family;
    }
  }
  // The same figures as EngineStats.
  EngineStats st = server.engine().stats();
  EXPECT_EQ(st.bytes_out, uint64_t(bytes));
  EXPECT_EQ(st.flush_bytes.sum, uint64_t(bytes));
  EXPECT_EQ(st.flush_bytes.count, st.write_calls);
  EXPECT_EQ(st.conn_writes, st.traffic_calls);
}

TEST_P(MetricsTest, AdminListenerAnswersEveryPathClearly) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.engine().listen_admin("tcp://127.0.0.1:0"));
  ASSERT_TRUE(server.start());
  const Engine& e = server.engine();
  HttpAnswer a;
  ASSERT_TRUE(admin_get(e, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &a));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "ok\n");
  ASSERT_TRUE(admin_get(e, "GET /metrics?name=x HTTP/1.0\r\n\r\n", &a));  // query ignored
  EXPECT_EQ(a.status, 200);
  EXPECT_NE(a.body.find("ringnet_connections_open"), std::string::npos);
  ASSERT_TRUE(admin_get(e, "HEAD /metrics HTTP/1.1\r\n\r\n", &a));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "");
  ASSERT_TRUE(admin_get(e, "GET /nope HTTP/1.1\r\n\r\n", &a));
  EXPECT_EQ(a.status, 404);
  ASSERT_TRUE(admin_get(e, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &a));
  EXPECT_EQ(a.status, 405);
  EXPECT_NE(a.head.find("Allow: GET, HEAD"), std::string::npos);
  ASSERT_TRUE(admin_get(e, "garbage\r\n\r\n", &a));
  EXPECT_EQ(a.status, 400);
  std::string huge = "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(9000, 'b');
  ASSERT_TRUE(admin_get(e, huge, &a));
  EXPECT_EQ(a.status, 431);
  // The served engine saw none of this: the admin listener is its own.
  EXPECT_EQ(server.engine().stats().accepted, 0u);
}

// A handler that answers complete lines and keeps a partial one buffered, so a connection
// holding a partial line stays busy through a drain.
class LineEcho : public EchoHandler {
 public:
  Action on_traffic(Conn& c) override {
    size_t nl = c.peek().rfind('\n');
    if (nl == std::string_view::npos) return Action::kNone;
    if (!c.write(c.next(nl + 1))) return Action::kClose;
    return Action::kNone;
  }
};

TEST_P(MetricsTest, HealthzTurnsUnavailableOnceDrainBegins) {
  LineEcho handler;
  TestServer server(handler, test_options(GetParam()));
  ASSERT_TRUE(server.engine().listen_admin("tcp://127.0.0.1:0"));
  ASSERT_TRUE(server.start());
  Client busy;
  ASSERT_TRUE(busy.connect_tcp(server.port()));
  ASSERT_TRUE(busy.send_all("partial"));
  ASSERT_TRUE(wait_until([&] { return server.engine().stats().bytes_in == 7; }, 5000ms));
  server.engine().shutdown(10s);
  ASSERT_TRUE(wait_until([&] { return server.engine().stopping(); }, 5000ms));
  HttpAnswer a;
  ASSERT_TRUE(admin_get(server.engine(), "GET /healthz HTTP/1.1\r\n\r\n", &a));
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.body, "draining\n");
  Scrape s;
  ASSERT_TRUE(scrape(server.engine(), &s));
  EXPECT_EQ(s.sum("ringnet_stopping"), 1);
  EXPECT_EQ(s.sum("ringnet_connections_open"), 1);
  // The request completes: answered, then the drain closes the connection.
  ASSERT_TRUE(busy.send_all(" line\n"));
  std::string got;
  ASSERT_TRUE(busy.recv_until_eof(&got));
  EXPECT_EQ(got, "partial line\n");
  server.engine().wait();
  EXPECT_EQ(server.engine().stats().drain_deadline_closed, 0u);
  EXPECT_EQ(handler.closes_with(CloseReason::kShutdown), 1u);
}

TEST_P(MetricsTest, MetricsOffKeepsCountersDropsHistograms) {
  EchoHandler handler;
  Options o = test_options(GetParam());
  o.metrics = false;
  TestServer server(handler, o);
  ASSERT_TRUE(server.engine().listen_admin("tcp://127.0.0.1:0"));
  ASSERT_TRUE(server.start());
  Client c;
  ASSERT_TRUE(c.connect_tcp(server.port()));
  ASSERT_TRUE(c.echo(make_payload(5000, 7)));
  // The loop counts a send after the syscall returns: the client may hold the echo first.
  ASSERT_TRUE(eventually([&] { return server.engine().stats().bytes_out == 5000; }));
  Scrape s;
  ASSERT_TRUE(scrape(server.engine(), &s));
  EXPECT_FALSE(s.has_family("ringnet_loop_busy_seconds"));
  EXPECT_FALSE(s.has_family("ringnet_flush_bytes"));
  EXPECT_EQ(s.sum("ringnet_received_bytes_total"), 5000);
  EXPECT_EQ(s.sum("ringnet_sent_bytes_total"), 5000);
  EXPECT_EQ(server.engine().stats().busy_ns.count, 0u);
}

TEST_P(MetricsTest, ListenAdminErrorsAreReported) {
  EchoHandler handler;
  TestServer server(handler, test_options(GetParam()));
  Engine& e = server.engine();
  EXPECT_FALSE(e.listen_admin("tcp://127.0.0.1:notaport"));
  ASSERT_TRUE(e.listen_admin("tcp://127.0.0.1:0"));
  Status twice = e.listen_admin("tcp://127.0.0.1:0");
  EXPECT_FALSE(twice);
  EXPECT_NE(twice.message().find("already"), std::string::npos) << twice.message();
  ASSERT_TRUE(server.start());
  EXPECT_FALSE(e.listen_admin("tcp://127.0.0.1:0"));
  // The port is taken now: a second engine cannot have it.
  EchoHandler other_handler;
  Engine other(other_handler, test_options(GetParam()));
  Status taken = other.listen_admin("tcp://" + e.admin_addr().to_string());
  EXPECT_FALSE(taken);
  EXPECT_EQ(taken.code(), EADDRINUSE) << taken.message();
}

INSTANTIATE_TEST_SUITE_P(Backends, MetricsTest, testing::ValuesIn(test_backends()),
                         backend_param_name);

// ---- pieces on their own --------------------------------------------------------------

TEST(Log2Histogram, BucketsAreExactAtPowersOfTwo) {
  EXPECT_EQ(Log2Histogram::bucket_of(0), 0);
  EXPECT_EQ(Log2Histogram::bucket_of(1), 0);
  EXPECT_EQ(Log2Histogram::bucket_of(2), 1);
  EXPECT_EQ(Log2Histogram::bucket_of(3), 2);
  EXPECT_EQ(Log2Histogram::bucket_of(1024), 10);
  EXPECT_EQ(Log2Histogram::bucket_of(1025), 11);
  EXPECT_EQ(Log2Histogram::bucket_of(UINT64_MAX), 64);
  Log2Histogram h;
  for (uint64_t v : {1u, 64u, 64u, 65u, 1000u, 1024u}) {
    ++h.buckets[Log2Histogram::bucket_of(v)];
    ++h.count;
    h.sum += v;
  }
  EXPECT_EQ(h.count_at_most_pow2(6), 3u);   // 1, 64, 64
  EXPECT_EQ(h.count_at_most_pow2(10), 6u);  // everything <= 1024
  EXPECT_EQ(h.quantile(0.5), 64u);
  EXPECT_EQ(h.quantile(1.0), 1024u);
  Log2Histogram twice = h;
  twice += h;
  EXPECT_EQ(twice.count, 12u);
  EXPECT_EQ(twice.count_at_most_pow2(6), 6u);
}

TEST(MetricsWriter, WritesValidTextAndSkipsDuplicateFamilies) {
  MetricsWriter w;
  w.family("a_total", MetricType::kCounter, "Help with \\ and\nnewline.");
  w.value("", uint64_t{3});
  w.value("x=\"" + MetricsWriter::escape_label("q\"b\\n\nl") + "\"", uint64_t{4});
  w.family("g", MetricType::kGauge, "A gauge.");
  w.value("", 0.25);
  w.family("a_total", MetricType::kCounter, "Again.");  // a caller bug: skipped
  w.value("", uint64_t{99});
  Log2Histogram h;
  for (uint64_t v : {100u, 2000u, 3000u}) {
    ++h.buckets[Log2Histogram::bucket_of(v)];
    ++h.count;
    h.sum += v;
  }
  w.family("lat_seconds", MetricType::kHistogram, "Latency.");
  w.histogram("loop=\"0\"", h, 1e-6, 6, 12, 2);  // le 64us, 256us, 1.024ms, 4.096ms
  EXPECT_EQ(w.duplicates(), 1);
  Scrape s;
  ASSERT_TRUE(parse_prometheus(w.text(), &s)) << w.text();
  EXPECT_EQ(s.samples.at("a_total"), 3);
  EXPECT_EQ(s.samples.at("a_total{x=\"q\\\"b\\\\n\\nl\"}"), 4);
  EXPECT_EQ(s.samples.at("g"), 0.25);
  EXPECT_EQ(s.samples.at("lat_seconds_bucket{loop=\"0\",le=\"0.000256\"}"), 1);
  EXPECT_EQ(s.samples.at("lat_seconds_bucket{loop=\"0\",le=\"0.001024\"}"), 1);
  EXPECT_EQ(s.samples.at("lat_seconds_bucket{loop=\"0\",le=\"0.004096\"}"), 3);
  EXPECT_EQ(s.samples.at("lat_seconds_bucket{loop=\"0\",le=\"+Inf\"}"), 3);
  EXPECT_DOUBLE_EQ(s.samples.at("lat_seconds_sum{loop=\"0\"}"), 0.0051);
  EXPECT_EQ(s.samples.at("lat_seconds_count{loop=\"0\"}"), 3);
  EXPECT_EQ(w.text().find("a_total 99"), std::string::npos);
  EXPECT_EQ(w.text().find("Again"), std::string::npos);
}

TEST(PrometheusParser, RejectsWhatPrometheusWould) {
  Scrape s;
  EXPECT_FALSE(parse_prometheus("x 1\n", &s));  // no TYPE
  s = {};
  EXPECT_FALSE(parse_prometheus("# TYPE x counter\nx -1\n", &s));
  s = {};
  EXPECT_FALSE(parse_prometheus("# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n", &s));
  s = {};
  EXPECT_FALSE(parse_prometheus(
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
      "h_sum 1\nh_count 2\n", &s));
  s = {};
  EXPECT_FALSE(parse_prometheus(
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
      &s));
  s = {};
  EXPECT_FALSE(parse_prometheus("# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a=\"b\"} 2\n", &s));
  s = {};
  EXPECT_FALSE(parse_prometheus("# TYPE x gauge\nx{a=\"unterminated} 1\n", &s));
  s = {};
  EXPECT_TRUE(parse_prometheus("# HELP x ok\n# TYPE x gauge\nx{a=\"b\"} 1.5e3\n", &s));
  EXPECT_EQ(s.samples.at("x{a=\"b\"}"), 1500);
}

TEST(WorkerPoolMetrics, JobsAndDelaysAreExposed) {
  WorkerPool pool({.threads = 2, .queue_capacity = 64, .name = "db"});
  ASSERT_TRUE(pool.start());
  std::atomic<int> ran{0};
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(pool.submit([&] { ran.fetch_add(1); }));
  ASSERT_TRUE(wait_until([&] { return pool.stats().completed == 20; }, 5000ms));
  MetricsWriter w;
  pool.write_metrics(w);
  Scrape s;
  ASSERT_TRUE(parse_prometheus(w.text(), &s)) << w.text();
  EXPECT_EQ(s.sum("ringnet_pool_jobs_total", {"pool=\"db\"", "outcome=\"completed\""}), 20);
  EXPECT_EQ(s.sum("ringnet_pool_jobs_total", {"outcome=\"rejected\""}), 0);
  EXPECT_EQ(s.sum("ringnet_pool_scheduling_delay_seconds_count"), 20);
  EXPECT_EQ(s.sum("ringnet_pool_run_seconds_count"), 20);
  EXPECT_EQ(s.sum("ringnet_pool_queue_capacity"), 64);
  EXPECT_EQ(s.sum("ringnet_pool_threads"), 2);
  EXPECT_EQ(ran.load(), 20);
}

}  // namespace
}  // namespace ringnet::test

// SPDX-License-Identifier: MIT
// Micro-benchmarks of HashRouter (<ringnet/proto/hash_router.h>): ns per key lookup for
// 10 and 1,000 nodes, ring against rendezvous, and acquire/release with bounded load.
//
//   build-release/bench/micro_hash_router
//
// range(0) is the node count. Keys are precomputed strings like real routing keys
// ("user:<n>"), cycled so the lookups do not all hit one cached ring position.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "ringnet/proto/hash_router.h"

namespace {

using ringnet::proto::HashRouter;
using ringnet::proto::HashRouterOptions;
using ringnet::proto::HashScheme;

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    for (int i = 0; i < 4096; ++i) v.push_back("user:" + std::to_string(i * 7919));
    return v;
  }();
  return k;
}

void fill(HashRouter& r, int64_t nodes) {
  for (int64_t i = 0; i < nodes; ++i)
    (void)r.add("tcp://10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".1:9000");
}

void lookup(benchmark::State& state, HashScheme scheme) {
  HashRouter r({.scheme = scheme});
  fill(r, state.range(0));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(r.pick(keys()[i++ & 4095]));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PickRing(benchmark::State& state) { lookup(state, HashScheme::kRing); }
void BM_PickRendezvous(benchmark::State& state) { lookup(state, HashScheme::kRendezvous); }

// acquire + release: what a routed call pays, with the bounded-load check (eps 0.25).
void BM_AcquireReleaseBounded(benchmark::State& state) {
  HashRouter r({.load_epsilon = 0.25});
  fill(r, state.range(0));
  size_t i = 0;
  for (auto _ : state) {
    HashRouter::Lease l = r.acquire(keys()[i++ & 4095]);
    r.release(l);
  }
  state.SetItemsProcessed(state.iterations());
}

// The hash alone, the floor under every lookup.
void BM_HashKey(benchmark::State& state) {
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(HashRouter::hash(keys()[i++ & 4095]));
}

BENCHMARK(BM_HashKey);
BENCHMARK(BM_PickRing)->Arg(10)->Arg(1000);
BENCHMARK(BM_PickRendezvous)->Arg(10)->Arg(1000);
BENCHMARK(BM_AcquireReleaseBounded)->Arg(10)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();

// SPDX-License-Identifier: MIT
// CallbacksInFlight: the user callbacks an object is running outside its lock, by thread,
// so that its destructor can wait for the ones running on other threads and not for one
// on its own stack (an object destroyed from inside its own callback).
//
//   std::unique_lock lock(mu_);
//   Done done = take_it_out_of_the_state();      // the request is no longer findable
//   {
//     CallbacksInFlight::Scope running(in_flight_, lock);  // counted under mu_, unlocks
//     done(status);
//   }                                             // uncounted under mu_, waiters woken
//
//   ~Owner:  under mu_, mark closed (no callback can be taken out after this), then
//            in_flight_.wait_others(lock).
//
// Counting happens under the owner's mutex, in the same critical section that took the
// callback out of the owner's state: a destructor that marked the owner closed under that
// mutex sees every callback that was taken out before. Internal to libringnet_proto.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ringnet::proto {

class CallbacksInFlight {
 public:
  // One or more callbacks about to run on this thread. `lock` holds the owner's mutex on
  // entry; the constructor counts this thread and releases it. The destructor takes the
  // mutex again (briefly) to uncount.
  class Scope {
   public:
    Scope(CallbacksInFlight& set, std::unique_lock<std::mutex>& lock)
        : set_(set), mu_(*lock.mutex()) {
      set_.threads_.push_back(std::this_thread::get_id());
      lock.unlock();
    }
    ~Scope() {
      std::lock_guard lock(mu_);
      auto it = std::find(set_.threads_.begin(), set_.threads_.end(), std::this_thread::get_id());
      set_.threads_.erase(it);
      set_.cv_.notify_all();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CallbacksInFlight& set_;
    std::mutex& mu_;
  };

  // `lock` holds the owner's mutex. Blocks (releasing it while it waits) until every
  // callback counted on another thread has returned; those on this thread are the
  // caller's own stack and are not waited for.
  void wait_others(std::unique_lock<std::mutex>& lock) {
    const std::thread::id self = std::this_thread::get_id();
    cv_.wait(lock, [&] {
      return std::all_of(threads_.begin(), threads_.end(),
                         [&](std::thread::id t) { return t == self; });
    });
  }

 private:
  std::condition_variable cv_;
  std::vector<std::thread::id> threads_;  // one entry per Scope alive, by thread
};

}  // namespace ringnet::proto

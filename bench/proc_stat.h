// SPDX-License-Identifier: MIT
// CPU time of a process (all its threads) from /proc/PID/stat, in seconds.
#pragma once

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace bench {

// utime + stime of `pid` in seconds, or a negative value if it cannot be read. The
// resolution is one clock tick (usually 10 ms), so measure over seconds, not milliseconds.
inline double process_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  // Field 2 (comm) may itself contain spaces and ')': parse from the last ')'.
  size_t paren = line.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(line.substr(paren + 1));
  std::string skip;
  for (int field = 3; field <= 13; ++field) fields >> skip;  // state .. cmajflt
  unsigned long long utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace bench

// SPDX-License-Identifier: MIT
// Command-line options of the echo load generator (see loadgen.cc for what it measures).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bench {

enum class OutputFormat { kTable, kCsv, kJson };

// The client's own event loop. kAuto is resolved before workers start (loadgen.cc).
enum class ClientBackend { kAuto, kEpoll, kUring };

const char* backend_name(ClientBackend backend);  // "auto", "epoll", "io_uring"

struct LoadgenOptions {
  std::string host = "127.0.0.1";
  int port = 0;                 // TCP target when unix_path is empty
  std::string unix_path;        // AF_UNIX target instead of TCP
  size_t conns = 50;
  size_t size = 64;             // bytes per message
  size_t pipeline = 1;          // messages in flight per connection
  double duration_s = 5.0;      // measured window
  double warmup_s = 1.0;        // traffic before the window, not counted
  size_t threads = 1;
  int server_pid = 0;           // 0: do not sample server CPU
  bool idle = false;            // connect, send nothing, hold until stdin EOF / SIGTERM
  size_t idle_echo = 0;         // idle mode: each connection first echoes this many bytes
  ClientBackend backend = ClientBackend::kEpoll;
  OutputFormat format = OutputFormat::kTable;

  std::string target() const;  // "tcp 127.0.0.1:19000" or "unix /path"
};

// Parses argv; on --help or a bad flag prints to stderr and exits (0 or 2).
LoadgenOptions parse_loadgen_options(int argc, char** argv);

// The CSV column names matching the --csv line, for --csv-header and scripts.
const char* loadgen_csv_header();

}  // namespace bench

// SPDX-License-Identifier: MIT
// Response heads, reason phrases and the per-thread Date cache. See http_response.h.
#include "ringnet/proto/http_response.h"

#include <time.h>

#include <charconv>
#include <cstring>

namespace ringnet::proto {
namespace {

// Appends pieces to buf[0..cap) while they fit and counts every byte, so one pass both
// formats and measures. Once a piece does not fit, nothing later fits either (the position
// only grows), so the bytes written are always a correct prefix.
class HeadWriter {
 public:
  HeadWriter(char* buf, size_t cap) : buf_(buf), cap_(cap) {}

  void put(std::string_view s) {
    if (pos_ <= cap_ && s.size() <= cap_ - pos_) std::memcpy(buf_ + pos_, s.data(), s.size());
    pos_ += s.size();
  }
  void put_number(uint64_t n) {
    char digits[20];
    auto r = std::to_chars(digits, digits + sizeof digits, n);
    put(std::string_view(digits, static_cast<size_t>(r.ptr - digits)));
  }
  void put_field(std::string_view name, std::string_view value) {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  }
  size_t size() const { return pos_; }

 private:
  char* buf_;
  size_t cap_;
  size_t pos_ = 0;
};

bool is_leap(int64_t year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

void put_two_digits(char* out, int64_t v) {
  out[0] = static_cast<char>('0' + v / 10);
  out[1] = static_cast<char>('0' + v % 10);
}

struct DateCache {
  int64_t second = -1;
  char text[kHttpDateLength] = {};
};

}  // namespace

std::string_view http_reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}

void format_http_date(int64_t unix_seconds, char* out) {
  static constexpr char kDays[] = "SunMonTueWedThuFriSat";
  static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  constexpr int64_t kMaxSeconds = 253402300799;  // 9999-12-31 23:59:59
  if (unix_seconds < 0) unix_seconds = 0;
  if (unix_seconds > kMaxSeconds) unix_seconds = kMaxSeconds;
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  int64_t weekday = (days + 4) % 7;  // 1970-01-01 was a Thursday
  // Called once a second per thread: walking years and months is cheap enough and plain.
  int64_t year = 1970;
  for (;;) {
    int64_t year_days = is_leap(year) ? 366 : 365;
    if (days < year_days) break;
    days -= year_days;
    ++year;
  }
  static constexpr int kMonthDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int month = 0;
  for (;; ++month) {
    int64_t month_days = kMonthDays[month] + (month == 1 && is_leap(year) ? 1 : 0);
    if (days < month_days) break;
    days -= month_days;
  }
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  std::memcpy(out, kDays + weekday * 3, 3);
  std::memcpy(out + 3, ", ", 2);
  put_two_digits(out + 5, days + 1);
  out[7] = ' ';
  std::memcpy(out + 8, kMonths + month * 3, 3);
  out[11] = ' ';
  put_two_digits(out + 12, year / 100);
  put_two_digits(out + 14, year % 100);
  out[16] = ' ';
  put_two_digits(out + 17, secs / 3600);
  out[19] = ':';
  put_two_digits(out + 20, secs / 60 % 60);
  out[22] = ':';
  put_two_digits(out + 23, secs % 60);
  std::memcpy(out + 25, " GMT", 4);
}

std::string_view http_date() {
  thread_local DateCache cache;
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  if (now.tv_sec != cache.second) {
    format_http_date(now.tv_sec, cache.text);
    cache.second = now.tv_sec;
  }
  return std::string_view(cache.text, kHttpDateLength);
}

size_t format_response_head(char* buf, size_t cap, int status, std::string_view content_type,
                            uint64_t content_length, bool keep_alive,
                            std::span<const HttpHeader> extra) {
  if (status < 100 || status > 999) status = 500;
  HeadWriter w(buf, cap);
  w.put("HTTP/1.1 ");
  w.put_number(static_cast<uint64_t>(status));
  w.put(" ");
  w.put(http_reason_phrase(status));
  w.put("\r\nServer: ringnet\r\n");
  w.put_field("Date", http_date());
  if (!content_type.empty()) w.put_field("Content-Type", content_type);
  if (status >= 200 && status != 204) {
    w.put("Content-Length: ");
    w.put_number(content_length);
    w.put("\r\n");
  }
  if (!keep_alive) w.put("Connection: close\r\n");
  for (const HttpHeader& h : extra) w.put_field(h.name, h.value);
  w.put("\r\n");
  return w.size();
}

std::string_view format_error_reply(int status, std::span<char, kHttpErrorReplyMax> buf) {
  if (status == 0) status = 400;
  size_t n = format_response_head(buf.data(), buf.size(), status, {}, 0, false, {});
  if (n > buf.size()) {
    // Cannot happen for the codes in the table; a fixed answer rather than a cut-off one.
    return "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  }
  return std::string_view(buf.data(), n);
}

}  // namespace ringnet::proto

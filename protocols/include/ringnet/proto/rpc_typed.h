// SPDX-License-Identifier: MIT
/// @file
/// Typed methods: handlers that take and return messages instead of bytes. Serialization
/// is pluggable through RpcSerializer<T>; two come built in:
///   - std::string: the raw bytes, as they are;
///   - any type with ParseFromArray(const void*, int) and SerializeToString(std::string*):
///     Protocol Buffers messages (full or lite), found by their shape, so this header needs
///     no protobuf header and ringnet no protobuf library: your program links its own.
///
///   // message GetRequest { string key = 1; }  message GetReply { string value = 1; }
///   ringnet::proto::add_typed_unary<GetRequest, GetReply>(
///       kv, "get", 1, [&](RpcCall&, const GetRequest& req, GetReply& reply) {
///         reply.set_value(store.at(req.key()));
///         return RpcStatus::ok();
///       });
///
/// A request that does not parse is answered INVALID_ARGUMENT without running the handler;
/// a reply that does not serialize, INTERNAL. Parsing runs inside the filter chain (after
/// decompression and the filters' on_request, as part of the handler).
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "ringnet/proto/rpc_server.h"

namespace ringnet::proto {

/// How a message type becomes bytes and back. Specialise it for your own types: a static
/// `bool parse(std::string_view, T&)` and a static `bool serialize(const T&, std::string&)`.
template <typename T, typename = void>
struct RpcSerializer;

/// Raw bytes.
template <>
struct RpcSerializer<std::string> {
  /// Copies the bytes.
  static bool parse(std::string_view in, std::string& out) {
    out.assign(in);
    return true;
  }
  /// Copies the bytes.
  static bool serialize(const std::string& in, std::string& out) {
    out = in;
    return true;
  }
};

/// Protocol Buffers messages (anything with their parse/serialize members).
template <typename T>
struct RpcSerializer<T, std::void_t<decltype(std::declval<T&>().ParseFromArray(
                                        static_cast<const void*>(nullptr), 0)),
                                    decltype(std::declval<const T&>().SerializeToString(
                                        static_cast<std::string*>(nullptr)))>> {
  /// ParseFromArray over the body (protobuf's int size: bodies are capped far below).
  static bool parse(std::string_view in, T& out) {
    return out.ParseFromArray(in.data(), static_cast<int>(in.size()));
  }
  /// SerializeToString.
  static bool serialize(const T& in, std::string& out) { return in.SerializeToString(&out); }
};

/// Registers `fn(RpcCall&, const Req&, Resp&) -> RpcStatus` as a unary method of `service`
/// (see RpcService::add_unary): the request is parsed into a Req, the reply serialized
/// from the Resp when the status is ok.
template <typename Req, typename Resp, typename Fn>
Status add_typed_unary(RpcService& service, std::string name, uint16_t id, Fn fn,
                       RpcMethodOptions options = {}) {
  return service.add_unary(
      std::move(name), id,
      [fn = std::move(fn)](RpcCall& call, std::string_view in, std::string& out) -> RpcStatus {
        Req request;
        if (!RpcSerializer<Req>::parse(in, request)) {
          return RpcStatus::make(RpcCode::kInvalidArgument,
                                 "request does not parse as the method's message");
        }
        Resp reply;
        RpcStatus status = fn(call, request, reply);
        if (status.is_ok() && !RpcSerializer<Resp>::serialize(reply, out)) {
          return RpcStatus::make(RpcCode::kInternal, "reply does not serialize");
        }
        return status;
      },
      options);
}

}  // namespace ringnet::proto

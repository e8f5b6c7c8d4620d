// TEMPORARY until h-comp lands
#include "ringnet/proto/rpc_compression.h"
namespace ringnet::proto {
RpcCompression rpc_compress(std::string_view, const RpcCompressionOptions&, std::string&) { return RpcCompression::kNone; }
RpcStatus rpc_decompress(uint8_t, std::string_view, size_t, std::string&) { return RpcStatus::make(RpcCode::kInvalidArgument, "stub"); }
const char* rpc_compression_name(RpcCompression) { return "?"; }
}

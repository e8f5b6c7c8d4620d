// SPDX-License-Identifier: MIT
// The version a program is compiled against (RINGNET_VERSION_* from <ringnet/version.h>)
// is the version of the library it runs with (ringnet::version()), and both are meson's
// project version (RINGNET_EXPECTED_VERSION, passed by tests/meson.build).
#include <gtest/gtest.h>
#include <ringnet/version.h>

#include <string>

namespace ringnet {
namespace {

TEST(Version, HeaderMacrosMatchTheLibrary) {
  const Version lib = version();
  EXPECT_EQ(lib.major, RINGNET_VERSION_MAJOR);
  EXPECT_EQ(lib.minor, RINGNET_VERSION_MINOR);
  EXPECT_EQ(lib.patch, RINGNET_VERSION_PATCH);
  EXPECT_EQ(lib, (Version{RINGNET_VERSION_MAJOR, RINGNET_VERSION_MINOR, RINGNET_VERSION_PATCH}));
  EXPECT_STREQ(version_string(), RINGNET_VERSION_STRING);
}

TEST(Version, StringIsTheThreeNumbers) {
  const Version lib = version();
  EXPECT_EQ(std::string(version_string()), std::to_string(lib.major) + "." +
                                               std::to_string(lib.minor) + "." +
                                               std::to_string(lib.patch));
}

TEST(Version, IsMesonsProjectVersion) {
  EXPECT_STREQ(RINGNET_VERSION_STRING, RINGNET_EXPECTED_VERSION);
  EXPECT_STREQ(version_string(), RINGNET_EXPECTED_VERSION);
}

TEST(Version, OrdersByMajorThenMinorThenPatch) {
  EXPECT_LT((Version{0, 1, 9}), (Version{0, 2, 0}));
  EXPECT_LT((Version{0, 9, 9}), (Version{1, 0, 0}));
  EXPECT_GT((Version{1, 0, 1}), (Version{1, 0, 0}));
}

}  // namespace
}  // namespace ringnet

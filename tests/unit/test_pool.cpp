// SlotArray: capacity is a hard number, indices come back for reuse, take()
// hands out a record reset to T{}, and take_as_left() one with its last
// user's bytes (the TLS record buffers, which are written before read).

#include "base/pool.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>

namespace {

using rg::base::nil;
using rg::base::SlotArray;

struct Buffer {
  std::array<std::uint8_t, 4096> bytes;
};

TEST(SlotArray, TakeResetsAndTakeAsLeftKeepsWhatTheLastUserWrote) {
  const struct Case {
    bool as_left;
    std::uint8_t expect;
  } cases[] = {{false, 0}, {true, 0xAB}};
  for (const Case& c : cases) {
    SlotArray<Buffer> a;
    ASSERT_TRUE(a.init(2, false));
    const std::uint32_t i = a.take();
    ASSERT_NE(i, nil);
    EXPECT_EQ(a[i].bytes[0], 0);  // fresh pages are zero either way
    a[i].bytes.fill(0xAB);
    a.give(i);
    const std::uint32_t j = c.as_left ? a.take_as_left() : a.take();
    EXPECT_EQ(j, i) << "a freed index is handed out again";
    EXPECT_EQ(a[j].bytes[0], c.expect) << "as_left " << c.as_left;
    EXPECT_EQ(a[j].bytes[4095], c.expect) << "as_left " << c.as_left;
  }
}

TEST(SlotArray, CapacityIsAHardLimitForBothTakes) {
  for (const bool as_left : {false, true}) {
    SlotArray<Buffer> a;
    ASSERT_TRUE(a.init(3, false));
    std::uint32_t taken[3];
    for (std::uint32_t& t : taken) {
      t = as_left ? a.take_as_left() : a.take();
      ASSERT_NE(t, nil);
    }
    EXPECT_EQ(a.in_use(), 3u);
    EXPECT_EQ(as_left ? a.take_as_left() : a.take(), nil);
    a.give(taken[1]);
    EXPECT_EQ(a.in_use(), 2u);
    EXPECT_EQ(as_left ? a.take_as_left() : a.take(), taken[1]);
    EXPECT_EQ(a.high_water(), 3u);
    EXPECT_EQ(a.touched_bytes(), 3 * sizeof(Buffer));
  }
}

}  // namespace

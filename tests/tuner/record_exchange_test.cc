#include "tunefarm/tuner/record_exchange.h"

#include <gtest/gtest.h>

namespace tunefarm::tuner {
namespace {

// A record's time is its fastest run; one from a server before min_cost
// (0 there) falls back to its mean.
TEST(RecordExchangeTest, FastestSecondsFallsBackToTheMeanOfOlderRecords) {
  v1::TuningRecord r;
  r.set_mean_cost(2e-3);
  EXPECT_DOUBLE_EQ(FastestSeconds(r), 2e-3);
  r.set_min_cost(1.5e-3);
  EXPECT_DOUBLE_EQ(FastestSeconds(r), 1.5e-3);
}

}  // namespace
}  // namespace tunefarm::tuner

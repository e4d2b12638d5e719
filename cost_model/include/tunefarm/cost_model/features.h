// Features of a candidate for the cost model, extracted from its lowered
// loop-nest IR (not only from knob values), with a fixed length per
// template: the same position means the same thing for every shape of one
// template, so a model trained on one shape helps another.
#pragma once

#include <string>
#include <vector>

#include "tunefarm/kernels/config_space.h"
#include "tunefarm/kernels/ir.h"

namespace tunefarm::cost_model {

// Layout (kFeatureLoopLevels levels, innermost first, then globals, then one
// value per knob):
//  per loop level of the hottest statement's loop nest: log2(1+extent); kind
//    one-hot (serial, parallel, vectorized, unrolled); log2(1+iterations of
//    this level and all inner ones); and for each of kFeatureBuffers memory
//    buffers touched inside the innermost non-unrolled loop (in order of first
//    touch): log2(1+|stride in bytes|) along this level and a reuse flag
//    (stride 0);
//  globals: log2 of estimated float ops, bytes loaded, bytes stored,
//    arithmetic intensity, log2 executions and vector lanes of the hottest
//    statement, loop depth, register-file elements, log2 heap bytes, heap
//    allocations, statements emitted by unrolling the hottest loop nest;
//  knobs: log2(1+value) for integer knobs, the choice index otherwise.
// Levels deeper than kFeatureLoopLevels keep the innermost ones; missing
// levels and buffers are zero.
// Bumped whenever the layout below changes; stored models record it.
inline constexpr int kFeatureVersion = 1;
inline constexpr int kFeatureLoopLevels = 10;
inline constexpr int kFeatureBuffers = 3;
inline constexpr int kFeaturesPerLevel = 6 + 2 * kFeatureBuffers;
inline constexpr int kFeatureGlobals = 11;

size_t FeatureCount(const kernels::ConfigSpace& space);
std::vector<std::string> FeatureNames(const kernels::ConfigSpace& space);

// Loop extents and conditions are evaluated at the first iteration of every
// enclosing loop (so min(tile, extent - i) reads as the full tile), which is
// also how IfThenElse picks the branch it follows.
std::vector<float> ExtractFeatures(const kernels::ir::LoweredFunc& f, const kernels::ConfigSpace& space,
                                   const kernels::Config& c);

}  // namespace tunefarm::cost_model

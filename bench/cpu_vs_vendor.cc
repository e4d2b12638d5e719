// Tunes each workload of a fixed list on the local CPU with a fixed trial
// budget, then times the tuned kernel and the vendor library alternately in
// this process: matmul against OpenBLAS cblas_sgemm, conv2d and
// depthwise_conv2d against oneDNN's direct convolution (memory format
// "any", the primitive alone timed, its layout conversions done once
// beforehand), both on the same 64-byte-aligned buffers. Single- and
// two-threaded; prints GFLOP/s of both, the ratio, and geometric means per
// group, with the targets.
#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include "CLI/CLI.hpp"
#include "bench_util.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "openblas_core.h"
#include "spdlog/spdlog.h"
#include "tunefarm/database/database.h"
#include "tunefarm/device_agents/backend.h"
#include "tunefarm/kernels/template.h"
#include "tunefarm/kernels/weights.h"
#include "tunefarm/tuner/tune.h"

namespace {

namespace tb = tunefarm::bench;
using tunefarm::kernels::Workload;

struct Case {
  std::string group;  // "matmul", "conv2d", "depthwise"
  std::string text;
  bool skinny = false;
  // The same convolution with its weights transformed for Winograd
  // F(2x2, 3x3) and F(4x4, 3x3) (winograd=1, 2), tuned beside `text`.
  std::vector<std::string> winograd_texts;
};

// `wblock` > 0: the conv2d workloads take their weights blocked by that
// many output channels, done once outside the timing (as oneDNN's weights
// are reordered to its blocked format once). `winograd`: the NHWC 3x3
// ones are also tuned with their weights transformed for Winograd, once
// outside the timing (as oneDNN's Winograd convolution takes them).
std::vector<Case> Cases(const std::string& layout, int wblock, bool winograd) {
  std::vector<Case> out;
  for (const char* m : {"M=1024,N=1024,K=1024", "M=512,N=512,K=512"}) out.push_back({"matmul", absl::StrCat("matmul(", m, ")")});
  for (const char* m : {"M=128,N=3072,K=768", "M=64,N=64,K=4096", "M=1,N=4096,K=4096", "M=77,N=129,K=61"}) {
    out.push_back({"matmul", absl::StrCat("matmul(", m, ")"), true});
  }
  // ResNet-50 at batch 1: the 3x3 convolution of each stage and the 1x1
  // convolution that feeds it.
  for (const char* c : {"C=64,H=56,W=56,K=64,R=3,S=3,stride=1,pad=1", "C=128,H=28,W=28,K=128,R=3,S=3,stride=1,pad=1",
                        "C=256,H=14,W=14,K=256,R=3,S=3,stride=1,pad=1", "C=512,H=7,W=7,K=512,R=3,S=3,stride=1,pad=1",
                        "C=256,H=56,W=56,K=64,R=1,S=1,stride=1,pad=0", "C=512,H=28,W=28,K=128,R=1,S=1,stride=1,pad=0",
                        "C=1024,H=14,W=14,K=256,R=1,S=1,stride=1,pad=0", "C=2048,H=7,W=7,K=512,R=1,S=1,stride=1,pad=0"}) {
    const std::string block = wblock > 0 ? absl::StrCat(",wblock=", wblock) : "";
    Case cc{"conv2d", absl::StrCat("conv2d(N=1,", c, block, ",layout=", layout, ")")};
    if (winograd && layout == "NHWC" && std::string_view(c).find("R=3") != std::string_view::npos) {
      for (int form : {1, 2}) {
        cc.winograd_texts.push_back(absl::StrCat("conv2d(N=1,", c, ",winograd=", form, ",layout=", layout, ")"));
      }
    }
    out.push_back(std::move(cc));
  }
  // MobileNet v1: the first two depthwise layers.
  for (const char* c : {"C=32,H=112,W=112,R=3,S=3,stride=1,pad=1", "C=64,H=112,W=112,R=3,S=3,stride=2,pad=1"}) {
    out.push_back({"depthwise", absl::StrCat("depthwise_conv2d(N=1,", c, ",layout=", layout, ")")});
  }
  return out;
}

tb::AlignedFloats Random(int64_t n, uint32_t seed) {
  tb::AlignedFloats v(n);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1, 1);
  for (float& x : v) x = d(rng);
  return v;
}

// The vendor side of one workload: runs into `out` (the tuned kernel's
// layout) once through Check(), and as fast as it can through Run().
class Vendor {
 public:
  virtual ~Vendor() = default;
  virtual void Run() = 0;
  virtual std::vector<float> Output() = 0;
};

class Blas : public Vendor {
 public:
  Blas(const Workload& w, const tb::AlignedFloats& a, const tb::AlignedFloats& b)
      : M(w.param("M")), N(w.param("N")), K(w.param("K")), a_(a), b_(b), c_(M * N) {}
  void Run() override {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a_.data(), K, b_.data(), N, 0.0f,
                c_.data(), N);
  }
  std::vector<float> Output() override { return std::vector<float>(c_.begin(), c_.end()); }

 private:
  int64_t M, N, K;
  const tb::AlignedFloats &a_, &b_;
  tb::AlignedFloats c_;
};

class Dnnl : public Vendor {
 public:
  using tag = dnnl::memory::format_tag;
  // data and weight in the template's layouts (conv_common.h). Throws
  // dnnl::error when oneDNN has no implementation of `alg` for the shape.
  Dnnl(const Workload& w, const tb::AlignedFloats& data, const tb::AlignedFloats& weight,
       dnnl::algorithm alg = dnnl::algorithm::convolution_direct)
      : eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {
    const bool dw = w.op == "depthwise_conv2d", nhwc = w.text("layout") == "NHWC";
    const int64_t N = w.param("N"), C = w.param("C"), H = w.param("H"), W = w.param("W");
    const int64_t K = dw ? C : w.param("K"), R = w.param("R"), S = w.param("S");
    const int64_t st = w.param("stride"), pad = w.param("pad"), d = w.param_or("dilation", 1);
    const int64_t OH = (H + 2 * pad - (R - 1) * d - 1) / st + 1, OW = (W + 2 * pad - (S - 1) * d - 1) / st + 1;
    using dt = dnnl::memory::data_type;
    dnnl::memory::dims src_d{N, C, H, W}, dst_d{N, K, OH, OW};
    dnnl::memory::dims wei_d = dw ? dnnl::memory::dims{C, 1, 1, R, S} : dnnl::memory::dims{K, C, R, S};
    auto any = [&](const dnnl::memory::dims& dims) { return dnnl::memory::desc(dims, dt::f32, tag::any); };
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, alg, any(src_d), any(wei_d), any(dst_d),
                                         {st, st}, {d - 1, d - 1}, {pad, pad}, {pad, pad});
    pd_ = dnnl::convolution_forward::primitive_desc(desc, eng_);
    conv_ = dnnl::convolution_forward(pd_);
    const tag act = nhwc ? tag::nhwc : tag::nchw;
    const tag wt = dw ? (nhwc ? tag::hwigo : tag::goihw) : (nhwc ? tag::hwio : tag::oihw);
    user_dst_ = dnnl::memory({dst_d, dt::f32, act}, eng_);
    src_ = Convert(dnnl::memory({src_d, dt::f32, act}, eng_, const_cast<float*>(data.data())), pd_.src_desc());
    wei_ = Convert(dnnl::memory({wei_d, dt::f32, wt}, eng_, const_cast<float*>(weight.data())), pd_.weights_desc());
    dst_ = dnnl::memory(pd_.dst_desc(), eng_);
    impl_ = pd_.impl_info_str();
  }
  void Run() override {
    conv_.execute(strm_, {{DNNL_ARG_SRC, src_}, {DNNL_ARG_WEIGHTS, wei_}, {DNNL_ARG_DST, dst_}});
    strm_.wait();
  }
  std::vector<float> Output() override {
    dnnl::reorder(dst_, user_dst_).execute(strm_, dst_, user_dst_);
    strm_.wait();
    const float* p = static_cast<const float*>(user_dst_.get_data_handle());
    return std::vector<float>(p, p + user_dst_.get_desc().get_size() / sizeof(float));
  }
  const std::string& impl() const { return impl_; }

 private:
  dnnl::memory Convert(dnnl::memory user, const dnnl::memory::desc& want) {
    if (user.get_desc() == want) return user;
    dnnl::memory m(want, eng_);
    dnnl::reorder(user, m).execute(strm_, user, m);
    strm_.wait();
    return m;
  }
  dnnl::engine eng_;
  dnnl::stream strm_;
  dnnl::convolution_forward::primitive_desc pd_;
  dnnl::convolution_forward conv_;
  dnnl::memory src_, wei_, dst_, user_dst_;
  std::string impl_;
};

struct Row {
  Case c;
  int threads = 1;
  double tuned = 0, vendor = 0, max_rel_diff = 0, tune_s = 0;
  double at_tuning = 0;  // GFLOP/s of the chosen config as the tuner measured it
  // oneDNN's Winograd convolution, where it has one (else 0): shown beside
  // the direct one that the targets are set against.
  double vendor_wino = 0;
  std::string vendor_impl, config;
  std::string text;  // the form timed: c.text or one of c.winograd_texts
  std::string form;  // "winograd=N" where the weights were given transformed
};

double Geomean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += std::log(x);
  return v.empty() ? 0 : std::exp(s / v.size());
}

// oneDNN's version and the instruction set its kernels use here.
std::string OneDnnDescription() {
  const std::pair<dnnl::cpu_isa, const char*> names[] = {
      {dnnl::cpu_isa::sse41, "sse41"},
      {dnnl::cpu_isa::avx, "avx"},
      {dnnl::cpu_isa::avx2, "avx2"},
      {dnnl::cpu_isa::avx2_vnni, "avx2_vnni"},
      {dnnl::cpu_isa::avx512_core, "avx512_core"},
      {dnnl::cpu_isa::avx512_core_vnni, "avx512_core_vnni"},
      {dnnl::cpu_isa::avx512_core_bf16, "avx512_core_bf16"},
      {dnnl::cpu_isa::avx512_core_amx, "avx512_core_amx"},
  };
  const dnnl::cpu_isa effective = dnnl::get_effective_cpu_isa();
  const char* isa = "other";
  for (const auto& [value, name] : names) {
    if (value == effective) isa = name;
  }
  const dnnl_version_t* v = dnnl_version();
  return absl::StrCat("oneDNN ", v->major, ".", v->minor, ".", v->patch, " (isa ", isa, ")");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string blas = tb::EnsureOpenBlasCore(argv);
  int trials = 96, batch = 16, rounds = 11, wblock = 64;
  bool winograd = true;
  std::vector<int> thread_counts = {1, 2};
  std::string strategy = "xgb", layout = "NCHW", only, db_dir;
  uint64_t seed = 1;
  CLI::App app{"tunefarm tuned kernels vs OpenBLAS (matmul) and oneDNN (conv2d, depthwise_conv2d)"};
  app.add_option("--trials", trials, "tuning budget per workload and thread count")->default_val(trials);
  app.add_option("--batch-size", batch, "candidates per batch")->default_val(batch);
  app.add_option("--strategy", strategy, "search strategy")->default_val(strategy);
  app.add_option("--seed", seed, "strategy seed")->default_val(seed);
  app.add_option("--rounds", rounds, "alternating timing rounds")->default_val(rounds);
  app.add_option("--threads", thread_counts, "thread counts to compare at")->default_str("1 2");
  app.add_option("--layout", layout, "layout of the convolutions")->check(CLI::IsMember({"NCHW", "NHWC"}))->default_val(layout);
  app.add_option("--wblock", wblock,
                 "conv2d weights blocked by this many output channels, once before timing as oneDNN's are "
                 "reordered (0: plain weights, which the kernel packs in every call)")
      ->check(CLI::IsMember({0, 16, 32, 48, 64}))
      ->default_val(wblock);
  app.add_option("--winograd", winograd,
                 "with --layout NHWC, also tune each 3x3 convolution with its weights transformed for Winograd "
                 "once before timing, for F(2x2, 3x3) (winograd=1) and for F(4x4, 3x3) (winograd=2), as oneDNN's "
                 "Winograd convolution takes them, and time the form the tuner measured fastest")
      ->default_val(winograd);
  app.add_option("--only", only, "run only workloads whose text contains this");
  app.add_option("--db-dir", db_dir, "keep the tuning log here (log.db; default: temporary)");
  std::vector<std::string> pin_texts;
  app.add_option("--pin", pin_texts,
                 "fix a knob to one value for every workload, e.g. --pin parallel=rows (repeatable); pin every knob "
                 "with --trials 1 to compare one config with the vendor");
  CLI11_PARSE(app, argc, argv);
  auto pins = tunefarm::kernels::ParsePins(pin_texts);
  if (!pins.ok()) return std::fprintf(stderr, "%s\n", std::string(pins.status().message()).c_str()), 2;
  spdlog::set_level(spdlog::level::warn);
  std::filesystem::path tmp = std::filesystem::temp_directory_path() / ("tunefarm-vendor-" + std::to_string(getpid()));
  std::filesystem::create_directories(tmp);
  if (db_dir.empty()) db_dir = tmp.string();
  std::filesystem::create_directories(db_dir);

  auto backend = tunefarm::device_agents::NewBackend("cpu");
  if (!backend.ok()) return std::fprintf(stderr, "%s\n", std::string(backend.status().message()).c_str()), 1;
  const auto& target = (*backend)->target();
  const int64_t cores = target.limits().at("cores");

  // One log for every thread count, as a user would keep: a run pinned to
  // two threads starts from the one-thread run's best configs, and reports
  // the best of its own thread count.
  auto db = tunefarm::database::Database::Open(absl::StrCat(db_dir, "/log.db"));
  if (!db.ok()) return std::fprintf(stderr, "%s\n", std::string(db.status().message()).c_str()), 1;
  std::vector<Row> rows;
  for (int threads : thread_counts) {
    if (threads > cores) {
      std::fprintf(stderr, "skipping %d threads: this machine has %lld cores\n", threads, static_cast<long long>(cores));
      continue;
    }
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
    for (const Case& c : Cases(layout, wblock, winograd)) {
      if (!only.empty() && c.text.find(only) == std::string::npos) continue;
      // Tunes each form of the case; the row keeps the form the tuner
      // measured fastest.
      Row row{c, threads};
      std::optional<Workload> w;
      uint64_t config_index = 0;
      std::vector<std::string> texts = {c.text};
      texts.insert(texts.end(), c.winograd_texts.begin(), c.winograd_texts.end());
      for (const std::string& text : texts) {
        auto form = tunefarm::kernels::ParseWorkload(text);
        if (!form.ok()) return std::fprintf(stderr, "%s\n", std::string(form.status().message()).c_str()), 1;
        std::fprintf(stderr, "[%d thread%s] tuning %s (%d trials)\n", threads, threads > 1 ? "s" : "", text.c_str(),
                     trials);
        tunefarm::tuner::TuneOptions opt;
        opt.trials = trials;
        opt.batch_size = batch;
        opt.seed = seed;
        opt.strategy = strategy;
        opt.pins = {{"threads", int64_t{threads}}};
        // Weights given transformed leave Winograd only: no "algo".
        const int64_t given = form->param_or("winograd", 0);
        for (const auto& p : *pins) {
          if (p.first != "threads" && !(given && p.first == "algo")) opt.pins.push_back(p);
        }
        const auto t0 = tb::Clock::now();
        auto report = tunefarm::tuner::TuneTask(*form, **backend, **db, opt, nullptr);
        if (!report.ok() || !report->best) {
          std::fprintf(stderr, "  tuning failed: %s\n",
                       report.ok() ? "no candidate passed its check" : std::string(report.status().message()).c_str());
          return 1;
        }
        row.tune_s += tb::Seconds(t0, tb::Clock::now());
        const double gflops = report->flops / report->best->min_cost / 1e9;
        std::fprintf(stderr, "  %.2f GFLOP/s as tuned\n", gflops);
        if (gflops <= row.at_tuning) continue;
        row.at_tuning = gflops;
        row.config = report->best_config;
        row.text = text;
        row.form = given != 0 ? absl::StrCat("winograd=", given) : "";
        w = *form;
        config_index = report->best->config_index;
      }
      auto kernel = tb::BuildAndLoad(*w, config_index, (tmp / absl::StrCat("k", rows.size(), ".so")).string());
      if (!kernel.ok()) return std::fprintf(stderr, "%s\n", std::string(kernel.status().message()).c_str()), 1;

      const tunefarm::kernels::Template& t = *tunefarm::kernels::TemplateRegistry::Global().Find(w->op);
      std::vector<tunefarm::kernels::ir::BufferArg> args = t.Buffers(*w);
      std::vector<tb::AlignedFloats> bufs;
      for (size_t i = 0; i < args.size(); ++i) {
        bufs.push_back(args[i].is_output ? tb::AlignedFloats(args[i].elements) : Random(args[i].elements, 7 + i));
      }
      // conv2d: the vendor's weights in the plain layout; ours converted
      // from them into the workload's layout.
      const bool conv = c.group == "conv2d";
      const tb::AlignedFloats plain_weight =
          conv ? Random(w->param("K") * w->param("C") * w->param("R") * w->param("S"), 8) : tb::AlignedFloats();
      if (conv) {
        auto converted = tunefarm::kernels::ConvWeightsFor(*w, plain_weight);
        if (!converted.ok()) return std::fprintf(stderr, "%s\n", std::string(converted.status().message()).c_str()), 1;
        bufs[1].assign(converted->begin(), converted->end());
      }
      std::vector<void*> ptrs;
      for (auto& b : bufs) ptrs.push_back(b.data());
      std::unique_ptr<Vendor> vendor;
      if (c.group == "matmul") {
        vendor = std::make_unique<Blas>(*w, bufs[0], bufs[1]);
      } else {
        auto d = std::make_unique<Dnnl>(*w, bufs[0], conv ? plain_weight : bufs[1]);
        row.vendor_impl = d->impl();
        vendor = std::move(d);
      }
      std::unique_ptr<Dnnl> wino;
      if (c.group == "conv2d") {
        try {
          wino = std::make_unique<Dnnl>(*w, bufs[0], plain_weight, dnnl::algorithm::convolution_winograd);
        } catch (const dnnl::error&) {
          // oneDNN has no Winograd convolution of this shape.
        }
      }
      auto run_tuned = [&] { (*kernel)(ptrs.data()); };
      auto run_vendor = [&] { vendor->Run(); };
      run_tuned();
      run_vendor();
      const std::vector<float> theirs = vendor->Output();
      const tb::AlignedFloats& ours = bufs.back();
      double scale = 0;
      for (float x : theirs) scale = std::max(scale, static_cast<double>(std::fabs(x)));
      for (size_t i = 0; i < ours.size(); ++i) {
        row.max_rel_diff = std::max(row.max_rel_diff, std::fabs(ours[i] - theirs[i]) / std::max(scale, 1e-30));
      }
      const double flops = t.Flops(*w);
      // With threads, each side's idle workers spin for a while after a
      // call (OpenBLAS's pthreads, libomp's 200 ms block time, libgomp's
      // spin count) and would take a core from the other side's next
      // timing; a pause lets them park first.
      auto settle = [&] {
        if (threads > 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      };
      std::vector<double> ours_gf, theirs_gf, wino_gf;
      for (int r = 0; r < rounds; ++r) {
        settle();
        ours_gf.push_back(flops / tb::TimePerCall(run_tuned) / 1e9);
        settle();
        theirs_gf.push_back(flops / tb::TimePerCall(run_vendor) / 1e9);
        if (wino) {
          settle();
          wino_gf.push_back(flops / tb::TimePerCall([&] { wino->Run(); }) / 1e9);
        }
      }
      row.tuned = tb::Median(ours_gf);
      row.vendor = tb::Median(theirs_gf);
      if (wino) row.vendor_wino = tb::Median(wino_gf);
      // The tuner's own measurement of the config beside the timing here:
      // far apart, the machine's speed changed between the two.
      std::fprintf(stderr, "  %.2f vs %.2f GFLOP/s = %.3fx  (%.2f GFLOP/s when tuned in %.0f s: %s%s%s)\n", row.tuned,
                   row.vendor, row.tuned / row.vendor, row.at_tuning, row.tune_s, row.form.c_str(),
                   row.form.empty() ? "" : " ", row.config.c_str());
      rows.push_back(std::move(row));
    }
  }

  std::printf("machine  %s (%s), %lld cores, key %s\n", target.model().c_str(), target.arch().c_str(),
              static_cast<long long>(cores), target.device_key().c_str());
  std::printf("vendor   %s; %s\n", blas.c_str(), OneDnnDescription().c_str());
  std::printf("tuning   %d trials per workload, strategy %s, batch %d; timing: median of %d alternating rounds\n\n",
              trials, strategy.c_str(), batch, rounds);
  std::printf("%-3s  %-78s %9s %9s %7s %9s %10s %7s\n", "thr", "workload", "tunefarm", "vendor", "ratio", "max rdiff",
              "dnnl-wino", "ratio");
  for (const Row& r : rows) {
    std::printf("%-3d  %-78s %9.2f %9.2f %7.3f %9.1e", r.threads, r.text.c_str(), r.tuned, r.vendor, r.tuned / r.vendor,
                r.max_rel_diff);
    if (r.vendor_wino > 0) std::printf(" %10.2f %7.3f", r.vendor_wino, r.tuned / r.vendor_wino);
    std::printf("\n");
  }
  std::printf("\n(GFLOP/s; vendor: OpenBLAS cblas_sgemm for matmul, oneDNN convolution for the rest; ");
  if (wblock > 0) {
    std::printf("conv2d weights blocked by %d output channels before timing, as oneDNN's are reordered)\n", wblock);
  } else {
    std::printf("conv2d weights plain, packed by the kernel in every call)\n");
  }
  std::printf(
      "(conv2d GFLOP/s count the direct convolution's operations whatever the algorithm; a tuned kernel with "
      "algo=winograd transforms the weights in every call; winograd=1 / winograd=2: the weights given transformed "
      "for F(2x2, 3x3) / F(4x4, 3x3), once before timing, where the tuner measured that form fastest (--winograd); "
      "dnnl-wino: oneDNN's Winograd convolution "
      "where it has one, its weights transformed once before timing; the targets are against oneDNN's direct "
      "convolution)\n\n");
  bool all_met = true;
  auto verdict = [&](bool ok) {
    all_met = all_met && ok;
    return ok ? "met" : "MISSED";
  };
  for (int threads : thread_counts) {
    std::map<std::string, std::vector<double>> by_group;
    double worst = 1e9;
    std::string worst_text;
    bool skinny_ok = true;
    std::vector<double> best_dnnl;  // conv2d against oneDNN's faster algorithm
    for (const Row& r : rows) {
      if (r.threads != threads) continue;
      const double ratio = r.tuned / r.vendor;
      by_group[r.c.group].push_back(ratio);
      if (r.c.group != "matmul") by_group["conv (conv2d + depthwise)"].push_back(ratio);
      if (r.c.group == "conv2d") best_dnnl.push_back(r.tuned / std::max(r.vendor, r.vendor_wino));
      if (r.c.skinny && ratio < 1.1) skinny_ok = false;
      if (ratio < worst) worst = ratio, worst_text = r.c.text;
    }
    if (by_group.empty()) continue;
    std::printf("%d thread%s:\n", threads, threads > 1 ? "s" : "");
    for (const auto& [group, ratios] : by_group) std::printf("  geomean %-27s %.3f\n", group.c_str(), Geomean(ratios));
    if (!best_dnnl.empty()) {
      std::printf("  (geomean conv2d against the faster of oneDNN's direct and Winograd: %.3f)\n", Geomean(best_dnnl));
    }
    if (by_group.count("matmul")) {
      const double want = threads == 1 ? 1.0 : 0.95;
      std::printf("  target matmul geomean >= %.2f: %s; every skinny matmul >= 1.1: %s\n", want,
                  verdict(Geomean(by_group["matmul"]) >= want), verdict(skinny_ok));
    }
    if (by_group.count("conv (conv2d + depthwise)")) {
      std::printf("  target conv geomean >= 1.0: %s\n", verdict(Geomean(by_group["conv (conv2d + depthwise)"]) >= 1.0));
    }
    std::printf("  target no workload below 0.8 (lowest %.3f, %s): %s\n", worst, worst_text.c_str(),
                verdict(worst >= 0.8));
  }
  std::filesystem::remove_all(tmp);
  return all_met ? 0 : 3;
}

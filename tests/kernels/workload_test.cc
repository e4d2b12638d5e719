#include "tunefarm/kernels/workload.h"

#include <gtest/gtest.h>

namespace tunefarm::kernels {
namespace {

TEST(WorkloadTest, ParsesAndCanonicalises) {
  auto w = ParseWorkload(" matmul( K = 61, M=77 ,N=129) ");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->Key(), "matmul(M=77,N=129,K=61,dtype=float32)");
  EXPECT_EQ(w->param("K"), 61);
  auto again = ParseWorkload(w->Key());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *w);
  EXPECT_EQ(again->Hash(), w->Hash());
}

// Optional parameters appear in the key only when they differ from their
// defaults, so keys written before they existed still name the same thing.
TEST(WorkloadTest, OptionalParametersKeepOldKeys) {
  auto plain = ParseWorkload("matmul(M=4,N=5,K=6,relu=0,trans_b=0)");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->Key(), "matmul(M=4,N=5,K=6,dtype=float32)");
  auto fused = ParseWorkload("matmul(relu=1,M=4,N=5,K=6,bias=1,trans_b=1)");
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(fused->Key(), "matmul(M=4,N=5,K=6,trans_b=1,bias=1,relu=1,dtype=float32)");
  EXPECT_EQ(*ParseWorkload(fused->Key()), *fused);
  EXPECT_EQ(fused->param_or("relu", 0), 1);
  EXPECT_EQ(plain->param_or("relu", 0), 0);
  auto bad = ParseWorkload("matmul(M=4,N=5,K=6,relu=2)");
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("relu must be 0 or 1"), std::string::npos);
}

// Text parameters (a layout) are required, checked against their names and
// listed after the numeric ones.
TEST(WorkloadTest, TextParameters) {
  auto w = ParseWorkload("conv2d(layout=NHWC,N=1,C=64,H=56,W=56,K=64,R=3,S=3,stride=1,pad=1,relu=1)");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->Key(), "conv2d(N=1,C=64,H=56,W=56,K=64,R=3,S=3,stride=1,pad=1,relu=1,layout=NHWC,dtype=float32)");
  EXPECT_EQ(w->text("layout"), "NHWC");
  EXPECT_EQ(*ParseWorkload(w->Key()), *w);
  auto b = ParseWorkload("conv2d(layout=NHWC,wblock=16,N=1,C=64,H=56,W=56,K=64,R=3,S=3,stride=1,pad=1)");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->Key(), "conv2d(N=1,C=64,H=56,W=56,K=64,R=3,S=3,stride=1,pad=1,wblock=16,layout=NHWC,dtype=float32)");
  auto d = ParseWorkload("depthwise_conv2d(N=1,C=32,H=112,W=112,R=3,S=3,stride=1,pad=1,layout=NCHW)");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->Key(), "depthwise_conv2d(N=1,C=32,H=112,W=112,R=3,S=3,stride=1,pad=1,layout=NCHW,dtype=float32)");
}

TEST(WorkloadTest, ClearErrors) {
  struct Case {
    const char* text;
    const char* fragment;
  };
  for (const Case& c : std::vector<Case>{
           {"", "missing operator"},
           {"conv9(M=1)", "unknown operator 'conv9'"},
           {"matmul", "expected '('"},
           {"matmul(M=1,N=1)", "missing parameter K"},
           {"matmul(M=1,N=1,K=1,X=2)", "unknown parameter 'X'"},
           {"matmul(M=1,M=2,N=1,K=1)", "given twice"},
           {"matmul(M=0,N=1,K=1)", "out of range"},
           {"matmul(M=-5,N=1,K=1)", "out of range"},
           {"matmul(M=abc,N=1,K=1)", "needs an integer"},
           {"matmul(M=99999999999999999999,N=1,K=1)", "out of range"},
           {"matmul(M=1048576,N=1048576,K=1)", "MiB"},
           {"matmul(M=1,N=1,K=1,dtype=int8)", "unsupported dtype"},
           {"matmul(M=1,N=1,K=1) extra", "unexpected text"},
           {"matmul(M=1 N=1,K=1)", "expected ',' or ')'"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1)", "missing parameter layout (NCHW or NHWC)"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,layout=NCWH)", "layout=NCWH is not supported"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,layout=3)", "layout=3 is not supported"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=3,layout=NCHW)", "pad=3 must be smaller than the kernel"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=1,S=1,stride=1,pad=1,layout=NHWC)", "pad=1 must be smaller"},
           {"conv2d(N=1,C=3,H=2,W=8,K=4,R=5,S=3,stride=1,pad=1,layout=NCHW)", "larger than the padded input"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=0,pad=1,layout=NCHW)", "stride=0 is out of range"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=-1,layout=NCHW)", "pad=-1 is out of range"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,dilation=0,layout=NCHW)", "dilation=0"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,layout=NCHW,layout=NHWC)", "given twice"},
           {"conv2d(N=1024,C=1024,H=1024,W=1024,K=4,R=3,S=3,stride=1,pad=1,layout=NCHW)", "MiB"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,wblock=12,layout=NHWC)",
            "wblock=12 must be 0 (plain weights) or a multiple of 16 up to 256"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,wblock=-16,layout=NHWC)", "wblock=-16"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,wblock=512,layout=NHWC)", "wblock=512"},
           {"depthwise_conv2d(N=1,C=3,H=8,W=8,R=3,S=3,stride=1,pad=1,wblock=16,layout=NHWC)",
            "unknown parameter 'wblock'"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,winograd=3,layout=NHWC)",
            "winograd must be 0 (plain weights), 1 (transformed for F(2x2, 3x3)) or 2 (for F(4x4, 3x3)), got 3"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,winograd=-1,layout=NHWC)", "got -1"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=2,pad=1,winograd=2,layout=NHWC)",
            "winograd=2 (weights transformed for Winograd F(4x4, 3x3)) needs layout=NHWC"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,winograd=1,layout=NCHW)",
            "winograd=1 (weights transformed for Winograd F(2x2, 3x3)) needs layout=NHWC, R=3, S=3, stride=1 and "
            "dilation=1; got layout=NCHW"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=2,pad=1,winograd=1,layout=NHWC)",
            "got layout=NHWC, R=3, "
            "S=3, stride=2"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=5,S=5,stride=1,pad=2,winograd=1,layout=NHWC)", "R=5, S=5"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=2,dilation=2,winograd=1,layout=NHWC)", "dilation=2"},
           {"conv2d(N=1,C=3,H=8,W=8,K=16,R=3,S=3,stride=1,pad=1,wblock=16,winograd=1,layout=NHWC)",
            "leave wblock and tf32 out"},
           {"conv2d(N=1,C=3,H=8,W=8,K=4,R=3,S=3,stride=1,pad=1,tf32=1,winograd=1,layout=NHWC)", "leave wblock"},
           {"depthwise_conv2d(N=1,C=3,H=8,W=8,R=3,S=3,stride=1,pad=1,winograd=1,layout=NHWC)",
            "unknown parameter 'winograd'"},
           {"depthwise_conv2d(N=1,C=3,H=8,W=8,K=3,R=3,S=3,stride=1,pad=1,layout=NCHW)", "unknown parameter 'K'"},
       }) {
    auto w = ParseWorkload(c.text);
    ASSERT_FALSE(w.ok()) << c.text;
    EXPECT_NE(std::string(w.status().message()).find(c.fragment), std::string::npos)
        << c.text << " -> " << w.status().message();
    EXPECT_EQ(std::string(w.status().message()).find('\n'), std::string::npos);
  }
}

}  // namespace
}  // namespace tunefarm::kernels

#include "tunefarm/device_agents/process.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tunefarm::device_agents {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

ProcessOptions WithTimeout(std::chrono::milliseconds timeout) {
  ProcessOptions options;
  options.timeout = timeout;
  return options;
}

class ProcessTest : public ::testing::Test {
 protected:
  ProcessResult MustRun(const std::vector<std::string>& argv,
                        const ProcessOptions& options = ProcessOptions()) {
    absl::StatusOr<ProcessResult> result = launcher_->Run(argv, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : ProcessResult();
  }

  std::shared_ptr<ProcessLauncher> launcher_ = NewPosixProcessLauncher();
};

TEST_F(ProcessTest, TrueExitsZero) {
  ProcessResult r = MustRun({"true"});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.Describe(), "exit code 0");
}

TEST_F(ProcessTest, FalseExitsOne) {
  ProcessResult r = MustRun({"false"});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.Describe(), "exit code 1");
}

TEST_F(ProcessTest, ReportsExitCode) {
  ProcessResult r = MustRun({"sh", "-c", "exit 2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.Describe(), "exit code 2");
}

TEST_F(ProcessTest, CapturesStdoutAndStderrSeparately) {
  ProcessResult r = MustRun({"sh", "-c", "echo out; echo err >&2"});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST_F(ProcessTest, StdinIsDevNull) {
  // `cat` would wait forever on an inherited terminal or pipe.
  ProcessResult r = MustRun({"cat"}, WithTimeout(std::chrono::seconds(5)));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
}

TEST_F(ProcessTest, ReportsKillingSignal) {
  ProcessResult r = MustRun({"sh", "-c", "kill -SEGV $$"});
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.signal, 11);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.Describe(), "killed by signal 11 (Segmentation fault)");
}

TEST_F(ProcessTest, KillsAHangAtTheDeadline) {
  auto start = std::chrono::steady_clock::now();
  ProcessResult r =
      MustRun({"sleep", "30"}, WithTimeout(std::chrono::milliseconds(300)));
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_LT(elapsed, 5.0);
  EXPECT_GE(r.wall_seconds, 0.29);
  EXPECT_THAT(r.Describe(), StartsWith("timed out after 0."));
  EXPECT_THAT(r.Describe(), HasSubstr(" s"));
}

TEST_F(ProcessTest, KeepsOutputWrittenBeforeTheDeadline) {
  ProcessResult r = MustRun({"sh", "-c", "echo early; exec sleep 30"},
                            WithTimeout(std::chrono::milliseconds(300)));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.out, "early\n");
}

TEST_F(ProcessTest, KillsTheWholeProcessGroupAtTheDeadline) {
  // The shell waits on a pipeline; killing only the shell would leave it.
  auto start = std::chrono::steady_clock::now();
  ProcessResult r = MustRun({"sh", "-c", "sleep 30 | cat; echo never"},
                            WithTimeout(std::chrono::milliseconds(300)));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.out, "");
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      5.0);
}

TEST_F(ProcessTest, GrandchildHoldingStdoutDoesNotHang) {
  auto start = std::chrono::steady_clock::now();
  ProcessResult r = MustRun({"sh", "-c", "sleep 30 & echo hi"},
                            WithTimeout(std::chrono::seconds(20)));
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_LT(elapsed, 5.0);
}

TEST_F(ProcessTest, TruncatesLargeOutputWithoutBlocking) {
  ProcessOptions options = WithTimeout(std::chrono::seconds(20));
  options.max_output_bytes = 1000;
  ProcessResult r = MustRun({"head", "-c", "5000000", "/dev/zero"}, options);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), 1000u);
  EXPECT_EQ(r.out, std::string(1000, '\0'));
}

TEST_F(ProcessTest, DefaultLimitAppliesToEachStream) {
  ProcessResult r = MustRun(
      {"sh", "-c",
       "head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo done"},
      WithTimeout(std::chrono::seconds(20)));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), size_t{1} << 20);
  EXPECT_EQ(r.err.size(), size_t{1} << 20);
}

TEST_F(ProcessTest, MissingProgramIsNotFound) {
  absl::StatusOr<ProcessResult> r =
      launcher_->Run({"tunefarm-no-such-program"}, ProcessOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("tunefarm-no-such-program"));

  r = launcher_->Run({"/nonexistent/dir/prog"}, ProcessOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessTest, EmptyCommandLineIsRejected) {
  absl::StatusOr<ProcessResult> r = launcher_->Run({}, ProcessOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ProcessTest, PassesExtraEnvironment) {
  ProcessOptions options;
  options.extra_env = {"TF_X=hello world"};
  ProcessResult r = MustRun({"sh", "-c", "echo $TF_X"}, options);
  EXPECT_EQ(r.out, "hello world\n");
}

TEST_F(ProcessTest, ExtraEnvironmentOverridesTheParents) {
  ASSERT_EQ(::setenv("TF_PROCESS_TEST_VAR", "parent", 1), 0);
  ProcessResult inherited = MustRun({"sh", "-c", "echo $TF_PROCESS_TEST_VAR"});
  EXPECT_EQ(inherited.out, "parent\n");

  ProcessOptions options;
  options.extra_env = {"TF_PROCESS_TEST_VAR=child"};
  ProcessResult r = MustRun(
      {"sh", "-c",
       "env | grep -c '^TF_PROCESS_TEST_VAR='; echo $TF_PROCESS_TEST_VAR"},
      options);
  EXPECT_EQ(r.out, "1\nchild\n");
  ::unsetenv("TF_PROCESS_TEST_VAR");
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "/process_test_XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = std::filesystem::canonical(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST_F(ProcessTest, HonoursWorkingDirectory) {
  TempDir dir;
  ProcessOptions options;
  options.working_dir = dir.path().string();
  ProcessResult r = MustRun({"pwd", "-P"}, options);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, dir.path().string() + "\n");
}

TEST_F(ProcessTest, MissingWorkingDirectoryIsAnError) {
  ProcessOptions options;
  options.working_dir = "/nonexistent/tunefarm/dir";
  absl::StatusOr<ProcessResult> r = launcher_->Run({"true"}, options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessTest, ChildLeadsItsOwnProcessGroup) {
  // Field 5 of /proc/<pid>/stat is the process group id.
  ProcessResult r =
      MustRun({"sh", "-c", "echo $$; cut -d' ' -f5 /proc/$$/stat"});
  ASSERT_EQ(r.exit_code, 0);
  size_t newline = r.out.find('\n');
  ASSERT_NE(newline, std::string::npos);
  EXPECT_EQ(r.out.substr(0, newline + 1), r.out.substr(newline + 1));
  EXPECT_NE(r.out.substr(0, newline), std::to_string(::getpgrp()));
}

TEST_F(ProcessTest, ConcurrentRunsKeepTheirOwnOutput) {
  // One long child runs alongside: if its pipes leaked into the other
  // children (or theirs into it), readers would wait for it.
  std::thread slow([&] {
    ProcessResult r = MustRun({"sleep", "3"});
    EXPECT_EQ(r.exit_code, 0);
  });
  std::atomic<int> failures{0};
  std::atomic<double> slowest{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        ProcessOptions options;
        options.extra_env = {absl::StrCat("TF_X=", t, "-", i)};
        absl::StatusOr<ProcessResult> r = launcher_->Run(
            {"sh", "-c", "echo $TF_X; echo e$TF_X >&2"}, options);
        if (!r.ok() || r->exit_code != 0 ||
            r->out != absl::StrCat(t, "-", i, "\n") ||
            r->err != absl::StrCat("e", t, "-", i, "\n")) {
          ++failures;
          continue;
        }
        double seen = slowest.load();
        while (r->wall_seconds > seen &&
               !slowest.compare_exchange_weak(seen, r->wall_seconds)) {
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  slow.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LT(slowest.load(), 2.0);
}

TEST(FindExecutableTest, SearchesPath) {
  std::string sh = FindExecutable("sh");
  ASSERT_FALSE(sh.empty());
  EXPECT_EQ(sh.front(), '/');
  EXPECT_EQ(::access(sh.c_str(), X_OK), 0);
  EXPECT_EQ(FindExecutable("tunefarm-no-such-program"), "");
  EXPECT_EQ(FindExecutable(""), "");
}

TEST(FindExecutableTest, PathsWithASlashAreCheckedAsGiven) {
  std::string sh = FindExecutable("sh");
  ASSERT_FALSE(sh.empty());
  EXPECT_EQ(FindExecutable(sh), sh);
  EXPECT_EQ(FindExecutable("/nonexistent/sh"), "");

  TempDir dir;
  EXPECT_EQ(FindExecutable(dir.path().string()), "");  // a directory
  std::string plain = (dir.path() / "plain.txt").string();
  std::ofstream(plain) << "not a program\n";
  ::chmod(plain.c_str(), 0644);
  EXPECT_EQ(FindExecutable(plain), "");
}

TEST(ProcessResultTest, Describe) {
  ProcessResult r;
  r.exit_code = 2;
  EXPECT_EQ(r.Describe(), "exit code 2");

  r = ProcessResult();
  r.signal = 9;
  EXPECT_EQ(r.Describe(), "killed by signal 9 (Killed)");

  r = ProcessResult();
  r.timed_out = true;
  r.wall_seconds = 2.04;
  EXPECT_EQ(r.Describe(), "timed out after 2.0 s");
}

}  // namespace
}  // namespace tunefarm::device_agents

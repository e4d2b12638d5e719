#include "tunefarm/device_agents/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace tunefarm::device_agents {
namespace {

using Clock = std::chrono::steady_clock;

// After the child exits we kill its process group, so whatever still holds
// the pipes open is a process that left the group (setsid). Its output is
// not worth waiting for beyond this.
constexpr std::chrono::milliseconds kDrainAfterExit{1000};

// Signals whose disposition a child must not inherit: the parent may ignore
// SIGPIPE (servers do) and ignored signals survive exec.
constexpr int kDefaultSignals[] = {SIGPIPE, SIGINT,  SIGQUIT, SIGTERM, SIGHUP,
                                   SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD, SIGXFSZ,
                                   SIGTTIN, SIGTTOU, SIGTSTP};

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  int Release() { return std::exchange(fd_, -1); }
  void Reset() {
    // close() is not retried on EINTR: on Linux the descriptor is gone anyway.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Owns a posix_spawn attribute or file-actions object for its lifetime.
class SpawnSetup {
 public:
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
  ~SpawnSetup() {
    posix_spawnattr_destroy(&attr_);
    posix_spawn_file_actions_destroy(&actions_);
  }
  posix_spawn_file_actions_t* actions() { return &actions_; }
  posix_spawnattr_t* attr() { return &attr_; }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  return ::access(path.c_str(), X_OK) == 0;
}

// One captured stream: reads what is available and keeps at most `limit`
// bytes, discarding the rest so the writer never blocks on a full pipe.
struct Stream {
  Fd fd;
  std::string* sink = nullptr;
  size_t limit = 0;

  // Reads until the pipe would block. Closes the fd at EOF or on error.
  void ReadAvailable() {
    char buf[65536];
    while (fd.valid()) {
      ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n > 0) {
        size_t room = limit > sink->size() ? limit - sink->size() : 0;
        sink->append(buf, std::min(room, static_cast<size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      fd.Reset();  // EOF, or an error we cannot recover from
    }
  }
};

absl::Status MakePipe(Fd& read_end, Fd& write_end) {
  // O_CLOEXEC at creation: a child spawned concurrently by another thread
  // must not inherit our pipe ends, or our reader would never see EOF.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "pipe2");
  }
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  // With stdin/stdout/stderr closed in the parent a pipe end could land on
  // 0-2, and the child's dup2 file actions would then clobber each other.
  for (Fd* end : {&read_end, &write_end}) {
    if (end->get() > STDERR_FILENO) continue;
    int moved = ::fcntl(end->get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (moved < 0) return absl::ErrnoToStatus(errno, "fcntl(F_DUPFD_CLOEXEC)");
    *end = Fd(moved);
  }
  int flags = ::fcntl(read_end.get(), F_GETFL);
  if (flags < 0 || ::fcntl(read_end.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return absl::ErrnoToStatus(errno, "fcntl(O_NONBLOCK)");
  }
  return absl::OkStatus();
}

// Builds the child's environment: the parent's, with `extra` entries
// replacing any variable of the same name.
absl::StatusOr<std::vector<std::string>> BuildEnvironment(
    const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    bool replaced = false;
    for (const std::string& x : extra) {
      size_t eq = x.find('=');
      if (eq != std::string::npos && entry.size() > eq &&
          entry.compare(0, eq + 1, x, 0, eq + 1) == 0) {
        replaced = true;
        break;
      }
    }
    if (!replaced) env.emplace_back(entry);
  }
  for (const std::string& x : extra) {
    if (x.find('=') == std::string::npos || x.front() == '=') {
      return absl::InvalidArgumentError(
          absl::StrCat("environment entry is not NAME=value: \"", x, "\""));
    }
    env.push_back(x);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

absl::Status SpawnError(int err, const std::string& program) {
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(
          absl::StrCat("cannot run \"", program, "\": ", std::strerror(err)));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(
          absl::StrCat("cannot run \"", program, "\": ", std::strerror(err)));
    default:
      return absl::ErrnoToStatus(err,
                                 absl::StrCat("cannot run \"", program, "\""));
  }
}

// Reaps `pid`, retrying on EINTR. Returns false when the child was already
// reaped by someone else (SIGCHLD ignored, or a waitpid(-1) elsewhere).
bool Reap(pid_t pid, int* status) {
  while (true) {
    if (::waitpid(pid, status, 0) == pid) return true;
    if (errno != EINTR) return false;
  }
}

// True when the child has terminated; leaves it a zombie so that its pid,
// and with it its process group id, cannot be reused before we kill the group.
bool HasExited(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  while (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (errno != EINTR) return true;  // ECHILD: gone already
  }
  return info.si_pid == pid;
}

// glibc 2.36's <sys/pidfd.h> lacks C linkage for C++, so go through syscall().
int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

int MillisUntil(Clock::time_point t) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

class PosixProcessLauncher final : public ProcessLauncher {
 public:
  absl::StatusOr<ProcessResult> Run(const std::vector<std::string>& argv,
                                    const ProcessOptions& options) override;
};

absl::StatusOr<ProcessResult> PosixProcessLauncher::Run(
    const std::vector<std::string>& argv, const ProcessOptions& options) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("empty command line");
  }
  std::string program = FindExecutable(argv[0]);
  if (program.empty()) {
    return absl::NotFoundError(
        absl::StrCat("program not found or not executable: \"", argv[0], "\""));
  }
  if (!options.working_dir.empty()) {
    struct stat st;
    if (::stat(options.working_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat(
          "working directory does not exist: \"", options.working_dir, "\""));
    }
    // posix_spawn changes directory before exec, which would change what a
    // relative program path means.
    if (program.front() != '/') {
      char* cwd = ::getcwd(nullptr, 0);
      if (cwd == nullptr) return absl::ErrnoToStatus(errno, "getcwd");
      program = absl::StrCat(cwd, "/", program);
      std::free(cwd);
    }
  }
  absl::StatusOr<std::vector<std::string>> env =
      BuildEnvironment(options.extra_env);
  if (!env.ok()) return env.status();
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(*env);

  Stream out, err;
  Fd out_write, err_write;
  if (absl::Status s = MakePipe(out.fd, out_write); !s.ok()) return s;
  if (absl::Status s = MakePipe(err.fd, err_write); !s.ok()) return s;

  SpawnSetup setup;
  posix_spawn_file_actions_t* actions = setup.actions();
  posix_spawnattr_t* attr = setup.attr();
  int rc = posix_spawn_file_actions_addopen(actions, STDIN_FILENO, "/dev/null",
                                            O_RDONLY, 0);
  // dup2 clears FD_CLOEXEC on the child's copy; the originals close at exec.
  if (rc == 0) {
    rc = posix_spawn_file_actions_adddup2(actions, out_write.get(),
                                          STDOUT_FILENO);
  }
  if (rc == 0) {
    rc = posix_spawn_file_actions_adddup2(actions, err_write.get(),
                                          STDERR_FILENO);
  }
  if (rc == 0 && !options.working_dir.empty()) {
    rc = posix_spawn_file_actions_addchdir_np(actions,
                                              options.working_dir.c_str());
  }
  sigset_t empty_mask, default_signals;
  sigemptyset(&empty_mask);
  sigemptyset(&default_signals);
  for (int sig : kDefaultSignals) sigaddset(&default_signals, sig);
  if (rc == 0) rc = posix_spawnattr_setpgroup(attr, 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(attr, &empty_mask);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(attr, &default_signals);
  if (rc == 0) {
    rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP |
                                            POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
  }
  if (rc != 0) return absl::ErrnoToStatus(rc, "posix_spawn setup");

  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + options.timeout;
  pid_t pid = -1;
  rc = ::posix_spawn(&pid, program.c_str(), actions, attr, c_args.data(),
                     c_env.data());
  if (rc != 0) return SpawnError(rc, argv[0]);
  out_write.Reset();
  err_write.Reset();

  ProcessResult result;
  out.sink = &result.out;
  err.sink = &result.err;
  out.limit = err.limit = options.max_output_bytes;

  // A pidfd wakes poll() when the child exits even while a grandchild still
  // holds the pipes. Without one (old kernels) we poll in short ticks.
  Fd pidfd(PidfdOpen(pid));

  bool exited = false;
  Clock::time_point drain_until = deadline;
  while (true) {
    if (!exited && HasExited(pid)) {
      exited = true;
      // Grandchildren left in the group would keep the pipes open.
      ::kill(-pid, SIGKILL);
      drain_until = std::min(deadline, Clock::now() + kDrainAfterExit);
      pidfd.Reset();
    }
    if (exited && !out.fd.valid() && !err.fd.valid()) break;
    if (Clock::now() >= (exited ? drain_until : deadline)) break;

    pollfd fds[3];
    nfds_t n = 0;
    for (Stream* s : {&out, &err}) {
      if (s->fd.valid()) fds[n++] = {s->fd.get(), POLLIN, 0};
    }
    int wait_ms = MillisUntil(exited ? drain_until : deadline);
    if (!exited) {
      if (pidfd.valid()) {
        fds[n++] = {pidfd.get(), POLLIN, 0};
      } else {
        wait_ms = std::min(wait_ms, 10);
      }
    }
    int ready = ::poll(fds, n, wait_ms);
    if (ready < 0 && errno != EINTR) break;
    // Reading a drained non-blocking pipe is harmless, so read both.
    out.ReadAvailable();
    err.ReadAvailable();
  }

  int status = 0;
  if (!exited) {
    result.timed_out = true;
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);  // in case it left its group
    Reap(pid, &status);
  } else if (Reap(pid, &status)) {
    if (WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      result.signal = WTERMSIG(status);
    }
  }
  // Whatever is already buffered is still worth keeping.
  out.ReadAvailable();
  err.ReadAvailable();
  result.wall_seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace

std::string ProcessResult::Describe() const {
  if (timed_out) return absl::StrFormat("timed out after %.1f s", wall_seconds);
  if (signal > 0) {
    const char* name = ::strsignal(signal);
    return absl::StrFormat("killed by signal %d (%s)", signal,
                           name != nullptr ? name : "unknown");
  }
  if (exit_code >= 0) return absl::StrCat("exit code ", exit_code);
  return "ended in an unknown way";
}

absl::StatusOr<std::unique_ptr<LineChild>> LineChild::Start(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0].empty()) return absl::InvalidArgumentError("empty command line");
  std::string program = FindExecutable(argv[0]);
  if (program.empty()) return absl::NotFoundError(absl::StrCat("program not found or not executable: \"", argv[0], "\""));
  absl::StatusOr<std::vector<std::string>> env = BuildEnvironment({});
  if (!env.ok()) return env.status();
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(*env);
  // The child's stdin blocks (its reads wait for requests); our end of its
  // stdout does not (Receive polls with a deadline).
  Fd in_read, in_write, out_read, out_write;
  if (absl::Status s = MakePipe(in_read, in_write); !s.ok()) return s;
  int flags = ::fcntl(in_read.get(), F_GETFL);
  if (flags < 0 || ::fcntl(in_read.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return absl::ErrnoToStatus(errno, "fcntl(~O_NONBLOCK)");
  }
  if (absl::Status s = MakePipe(out_read, out_write); !s.ok()) return s;
  SpawnSetup setup;
  int rc = posix_spawn_file_actions_adddup2(setup.actions(), in_read.get(), STDIN_FILENO);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(setup.actions(), out_write.get(), STDOUT_FILENO);
  sigset_t empty_mask, default_signals;
  sigemptyset(&empty_mask);
  sigemptyset(&default_signals);
  for (int sig : kDefaultSignals) sigaddset(&default_signals, sig);
  if (rc == 0) rc = posix_spawnattr_setpgroup(setup.attr(), 0);
  if (rc == 0) rc = posix_spawnattr_setsigmask(setup.attr(), &empty_mask);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(setup.attr(), &default_signals);
  if (rc == 0) {
    rc = posix_spawnattr_setflags(setup.attr(), POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (rc != 0) return absl::ErrnoToStatus(rc, "posix_spawn setup");
  pid_t pid = -1;
  rc = ::posix_spawn(&pid, program.c_str(), setup.actions(), setup.attr(), c_args.data(), c_env.data());
  if (rc != 0) return SpawnError(rc, argv[0]);
  return std::unique_ptr<LineChild>(new LineChild(pid, in_write.Release(), out_read.Release()));
}

LineChild::~LineChild() {
  ::close(in_);
  ::close(out_);
  if (!reaped_) {
    ::kill(-pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

absl::Status LineChild::Send(const std::string& line) {
  // A write to a pipe nobody reads raises SIGPIPE: block it for this
  // thread, and take a pending one back before unblocking.
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  std::string data = line + "\n";
  size_t done = 0;
  int err = 0;
  while (done < data.size()) {
    ssize_t n = ::write(in_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == EPIPE) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err == EPIPE) return absl::UnavailableError(absl::StrCat("the child has gone (", Describe(), ")"));
  if (err != 0) return absl::ErrnoToStatus(err, "write to child");
  return absl::OkStatus();
}

absl::StatusOr<std::string> LineChild::Receive(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    struct pollfd p = {out_, POLLIN, 0};
    int ready = ::poll(&p, 1, MillisUntil(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return absl::DeadlineExceededError("no answer from the child in time");
    char buf[65536];
    ssize_t n = ::read(out_, buf, sizeof buf);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      return absl::UnavailableError(absl::StrCat("the child has gone (", Describe(), ")"));
    }
  }
}

std::string LineChild::Describe() {
  if (!reaped_) {
    const Clock::time_point until = Clock::now() + std::chrono::seconds(1);
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (r != pid_) return "running";
    reaped_ = true;
    ::kill(-pid_, SIGKILL);  // what it left behind in its group
    if (WIFEXITED(status)) end_.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) end_.signal = WTERMSIG(status);
  }
  return end_.Describe();
}

std::shared_ptr<ProcessLauncher> NewPosixProcessLauncher() {
  return std::make_shared<PosixProcessLauncher>();
}

std::string FindExecutable(const std::string& name) {
  if (name.empty()) return "";
  if (name.find('/') != std::string::npos) {
    return IsExecutableFile(name) ? name : "";
  }
  const char* path = std::getenv("PATH");
  std::string search = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(search, ':')) {
    // Empty entries mean the current directory; a child's working directory
    // would change what they resolve to, so they are skipped.
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (IsExecutableFile(candidate)) return candidate;
  }
  return "";
}

}  // namespace tunefarm::device_agents

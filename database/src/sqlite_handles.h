// RAII owners for SQLite handles, a prepared-statement wrapper and the one
// place where SQLite result codes become absl::Status.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tunefarm::database::internal {

struct ConnectionDeleter {
  // close_v2 defers the close until every statement is finalized, so a
  // leaked statement cannot make the close fail and leak the connection.
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using ConnectionPtr = std::unique_ptr<sqlite3, ConnectionDeleter>;

struct StatementDeleter {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StatementPtr = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

// Maps an SQLite result code (primary or extended) to a Status whose message
// is `context`, SQLite's error message for `db` (or the generic text for `rc`
// when `db` is null or holds an unrelated error) and the code's name:
//   BUSY, LOCKED                     -> UNAVAILABLE (another connection holds
//                                       the lock past the busy timeout; retry)
//   CONSTRAINT_UNIQUE / PRIMARYKEY   -> ALREADY_EXISTS
//   other CONSTRAINT (foreign key, not null, check) -> FAILED_PRECONDITION
//   READONLY, NOTADB                 -> FAILED_PRECONDITION (the file, not the
//                                       call, is wrong)
//   anything else                    -> INTERNAL
absl::Status SqliteStatus(sqlite3* db, int rc, std::string_view context);

// A prepared statement on loan from a connection's statement cache. Binding
// errors are remembered and reported by the next Step(), so call sites bind
// without checking each call. The destructor resets the statement: a reset
// statement holds no read transaction, so an idle reader never pins an old
// WAL snapshot (which would stop checkpoints and grow the WAL file).
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(other.stmt_), bind_rc_(other.bind_rc_) {
    other.stmt_ = nullptr;
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  // Parameters are 1-based, as in SQLite. Values are copied.
  void Bind(int index, std::string_view value);
  void Bind(int index, int64_t value);
  void Bind(int index, double value);
  void BindNull(int index);

  // True when a row is available, false when the statement is done.
  absl::StatusOr<bool> Step();
  // Runs a statement that returns no rows (or whose rows are not needed).
  absl::Status Run();

  // Column accessors for the current row; indices are 0-based. NULL reads
  // as an empty string / zero.
  std::string Text(int column) const;
  int64_t Int64(int column) const;
  double Double(int column) const;
  bool IsNull(int column) const;

 private:
  void NoteBind(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;  // owned by the cache, not by this object
  int bind_rc_ = SQLITE_OK;
};

}  // namespace tunefarm::database::internal

// Invariants: which checks ship, and what a failed one does.
//
// RG_ASSERT(cond) stays on in every build, release included.  It is for
// checks that cost a compare on a value already at hand: a slot index
// against the table, a state a handler requires, a counter that must not go
// below zero.  A failure prints the expression and where it is, then aborts:
// a worker whose connection table is corrupt must not go on serving (and
// corrupting) a million connections; systemd restarts the process, and the
// clients reconnect.
//
// assert(cond) (<cassert>) is for checks too expensive to ship: walks,
// sums, re-derivations of state kept incrementally.  They run in the
// debugoptimized and ASan builds that the tests use, and vanish under NDEBUG.
//
// Neither may have side effects (clang-tidy's bugprone-assert-side-effect
// checks both): the program must do the same with and without them.
#pragma once

namespace rg::base {

[[noreturn]] void assert_failed(const char* expr, const char* file, int line) noexcept;

}  // namespace rg::base

#define RG_ASSERT(cond) \
  ((cond) ? static_cast<void>(0) : ::rg::base::assert_failed(#cond, __FILE__, __LINE__))

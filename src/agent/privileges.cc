// Privilege dropping for the agent; see privileges.h.
#include "agent/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <vector>

#include <fmt/format.h>

namespace trawl::agent {

Result<UserIds> lookup_user(const std::string& user) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0) return Error::from_errno(fmt::format("looking up user '{}'", user), rc);
  if (!found) return Error(fmt::format("user '{}' does not exist", user));
  return UserIds{pw.pw_uid, pw.pw_gid};
}

bool has_no_capabilities() {
  cap_t caps = cap_get_proc();
  if (!caps) return false;
  cap_t empty = cap_init();
  bool none = cap_compare(caps, empty) == 0;
  cap_free(empty);
  cap_free(caps);
  return none;
}

Status drop_privileges(const std::string& user) {
  if (geteuid() != 0) return ok_status();
  auto ids = lookup_user(user);
  if (!ids) return std::move(ids).error().with_context("dropping privileges");
  if (ids->uid == 0) return Error(fmt::format("dropping privileges: user '{}' is root", user));
  if (setgroups(0, nullptr) != 0) return Error::from_errno("dropping privileges: setgroups");
  if (setgid(ids->gid) != 0) return Error::from_errno("dropping privileges: setgid");
  if (setuid(ids->uid) != 0) return Error::from_errno("dropping privileges: setuid");
  // setuid() away from root already empties the permitted set (no
  // SECBIT_KEEP_CAPS); clear explicitly anyway, and forbid regaining any.
  cap_t empty = cap_init();
  int rc = cap_set_proc(empty);
  cap_free(empty);
  if (rc != 0) return Error::from_errno("dropping privileges: clearing capabilities");
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Error::from_errno("dropping privileges: no_new_privs");
  if (setuid(0) == 0) return Error("dropping privileges: could regain root");
  if (!has_no_capabilities()) return Error("dropping privileges: capabilities remain");
  return ok_status();
}

}  // namespace trawl::agent

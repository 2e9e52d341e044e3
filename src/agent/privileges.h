// Dropping root after the capture handles are open. The agent keeps no
// capability: the TPACKET rings are already mapped, and everything else it
// does (spool files, TCP to the collector) needs none.
#pragma once

#include <string>
#include <sys/types.h>

#include "core/result.h"

namespace trawl::agent {

struct UserIds {
  uid_t uid;
  gid_t gid;
};

Result<UserIds> lookup_user(const std::string& user);
// setgroups/setgid/setuid to the user, clear every capability (effective,
// permitted, inheritable, ambient, bounding where allowed) and set
// no_new_privs; verifies the result. A no-op error-free call when not root.
Status drop_privileges(const std::string& user);
// True if the process has no capability in its effective or permitted set.
bool has_no_capabilities();

}  // namespace trawl::agent

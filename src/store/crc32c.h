// The index's checksums (block CRCs of segment bytes, record CRCs) are
// CRC32C: core/crc32c.h, shared with the agent's spool.
#pragma once

#include "core/crc32c.h"

namespace trawl::store {

using trawl::crc32c;

}  // namespace trawl::store

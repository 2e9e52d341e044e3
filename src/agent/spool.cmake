# trawl_spool: the agent's bounded on-disk batch spool (docs/spool.md).
add_library(trawl_spool STATIC ${CMAKE_CURRENT_LIST_DIR}/spool.cc)
target_link_libraries(trawl_spool PUBLIC trawl_core)

# trawl_transport: connected byte streams (plain TCP, mutually authenticated
# TLS 1.3). Included from src/wire/CMakeLists.txt.
add_library(trawl_transport STATIC
  ${CMAKE_CURRENT_LIST_DIR}/tcp.cc
  ${CMAKE_CURRENT_LIST_DIR}/tls.cc)
target_link_libraries(trawl_transport
  PUBLIC trawl_core OpenSSL::SSL OpenSSL::Crypto
  PRIVATE spdlog::spdlog fmt::fmt)

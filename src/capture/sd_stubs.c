/* Linked only with the static libpcap (TRAWL_STATIC_DEPS, CMakeLists.txt).
 *
 * libpcap's D-Bus capture source brings in the static libdbus, which refers
 * to two of systemd's socket-activation helpers (used when a D-Bus *server*
 * is started by systemd with sockets passed in). trawl never runs a D-Bus
 * server, and Debian ships no static libsystemd, so these answer what the
 * real ones answer for a process that was not socket-activated: no sockets
 * were passed (sd_listen_fds(3) returns 0), and a descriptor is not one of
 * them (sd_is_socket(3) returns 0). */
int sd_listen_fds(int unset_environment);
int sd_is_socket(int fd, int family, int type, int listening);

int sd_listen_fds(int unset_environment) {
  (void)unset_environment;
  return 0;
}

int sd_is_socket(int fd, int family, int type, int listening) {
  (void)fd;
  (void)family;
  (void)type;
  (void)listening;
  return 0;
}

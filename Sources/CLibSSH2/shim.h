#ifndef ROLLCTL_CLIBSSH2_SHIM_H
#define ROLLCTL_CLIBSSH2_SHIM_H
#include <libssh2.h>
#include <libssh2_publickey.h>
#include <libssh2_sftp.h>
#include <poll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

// libssh2's function-like macros are invisible to Swift; these wrappers expose them.
static inline LIBSSH2_SESSION *rollctl_session_init(void) { return libssh2_session_init_ex(NULL, NULL, NULL, NULL); }
static inline LIBSSH2_CHANNEL *rollctl_channel_open_session(LIBSSH2_SESSION *s) {
    return libssh2_channel_open_ex(s, "session", sizeof("session") - 1, LIBSSH2_CHANNEL_WINDOW_DEFAULT, LIBSSH2_CHANNEL_PACKET_DEFAULT, NULL, 0);
}
static inline int rollctl_channel_exec(LIBSSH2_CHANNEL *c, const char *cmd) {
    return libssh2_channel_process_startup(c, "exec", sizeof("exec") - 1, cmd, (unsigned int)strlen(cmd));
}
static inline ssize_t rollctl_channel_read(LIBSSH2_CHANNEL *c, int stream, char *buf, size_t len) {
    return libssh2_channel_read_ex(c, stream, buf, len);
}
static inline int rollctl_session_disconnect(LIBSSH2_SESSION *s, const char *why) {
    return libssh2_session_disconnect_ex(s, SSH_DISCONNECT_BY_APPLICATION, why, "");
}
static inline int rollctl_userauth_publickey_fromfile(LIBSSH2_SESSION *s, const char *user, const char *priv, const char *pass) {
    return libssh2_userauth_publickey_fromfile_ex(s, user, (unsigned int)strlen(user), NULL, priv, pass);
}
static inline int rollctl_knownhost_readfile(LIBSSH2_KNOWNHOSTS *h, const char *path) {
    return libssh2_knownhost_readfile(h, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
}
static inline int rollctl_channel_send_eof(LIBSSH2_CHANNEL *c) { return libssh2_channel_send_eof(c); }
static inline int rollctl_sock_error(int fd) {
    int err = 0; socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
}
static inline int rollctl_errno(void) { return errno; }
static inline LIBSSH2_SFTP_HANDLE *rollctl_sftp_open_write(LIBSSH2_SFTP *sftp, const char *path, long mode) {
    return libssh2_sftp_open_ex(sftp, path, (unsigned int)strlen(path),
                                LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC, mode, LIBSSH2_SFTP_OPENFILE);
}
static inline int rollctl_sftp_close(LIBSSH2_SFTP_HANDLE *h) { return libssh2_sftp_close_handle(h); }
#endif

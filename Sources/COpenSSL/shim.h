#ifndef ROLLCTL_COPENSSL_SHIM_H
#define ROLLCTL_COPENSSL_SHIM_H
// The system's OpenSSL 3 (libssl-dev), for TLSSession (SMTP STARTTLS, https
// webhooks) and the plan hash (Digest.swift). Headers, not hand-typed
// signatures: the compiler checks every call against the library's own API.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/x509_vfy.h>

// OpenSSL's function-like macros are invisible to Swift; these wrappers expose
// them with the macro's own return value (1 on success unless noted).

/// SSL_CTX_set_min_proto_version: 1 on success, 0 on failure.
static inline int rollctl_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

/// SSL_CTX_get_min_proto_version: the version set, 0 for "the lowest the library supports".
static inline int rollctl_SSL_CTX_get_min_proto_version(SSL_CTX *ctx) {
    return (int)SSL_CTX_get_min_proto_version(ctx);
}

/// SSL_CTX_set_mode: the context's mode bitmask after the call.
static inline long rollctl_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

/// SSL_set_tlsext_host_name (SNI): 1 on success, 0 on failure.
static inline int rollctl_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
#endif

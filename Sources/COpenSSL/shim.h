/* OpenSSL: libcrypto for the cluster handshake's HMAC and nonces, libssl for TLS 1.3 on every
 * peer connection (Sources/Chimaera/Remote/TLS*.swift). OpenSSL's function-like macros do not
 * import into Swift; the inline wrappers below are those macros, nothing more. */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline int chi_ssl_ctx_tls13_only(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 &&
           SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1;
}
static inline void chi_ssl_ctx_set_max_cert_list(SSL_CTX *ctx, long n) { SSL_CTX_set_max_cert_list(ctx, n); }
static inline long chi_bio_pending(BIO *b) { return (long)BIO_ctrl_pending(b); }

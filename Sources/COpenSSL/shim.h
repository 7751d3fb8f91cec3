/* OpenSSL's libcrypto: HMAC-SHA256 and random nonces for the cluster handshake. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

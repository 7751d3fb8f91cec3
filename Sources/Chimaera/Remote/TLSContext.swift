import COpenSSL
import Glibc

/// The OpenSSL contexts (libssl) for peer connections: TLS 1.3 only, a client context for the
/// connections this node opens and a server context for the ones it accepts, loaded once.
///
/// Two ways to authenticate, both mutual (`cluster.tls`):
/// - certificates: each side presents a certificate that must chain to the cluster CA;
/// - PSK: a TLS 1.3 external pre-shared key derived from `cluster.key` (HMAC-SHA256 of a
///   label); no certificates, and a peer without the key fails the handshake.
/// Either way every byte after the handshake is encrypted and authenticated by TLS itself.
/// Session tickets are off: no resumption, and nothing flows on a connection after its
/// handshake but what this node's protocol sends.
final class TLSContext: @unchecked Sendable {
    let client: OpaquePointer
    let server: OpaquePointer
    /// The PSK (32 bytes), in PSK mode; read by the OpenSSL callbacks.
    let psk: [UInt8]
    static let pskIdentity = Array("chimaera-cluster-psk".utf8)
    /// The identity where OpenSSL may keep a pointer to it (made once, never freed).
    nonisolated(unsafe) static let pskIdentityBytes: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: pskIdentity.count)
        p.initialize(from: pskIdentity, count: pskIdentity.count)
        return p
    }()
    /// Ciphertext an unauthenticated peer may have buffered here at once: a little more than
    /// one TLS record, which is all a handshake step needs.
    static let preHandshakeBytes = 20 << 10

    /// Builds both contexts. Throws ChiError(EINVAL) naming the file or OpenSSL's reason.
    init(mode: ClusterConfig.TLSMode, key: [UInt8]) throws(ChiError) {
        guard let c = SSL_CTX_new(TLS_client_method()), let s = SSL_CTX_new(TLS_server_method()) else {
            throw ChiError(ENOMEM, "cluster.tls: cannot create an OpenSSL context: \(Self.lastError())")
        }
        client = c
        server = s
        var mac = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let label = Array("chimaera tls 1.3 external psk".utf8)
        _ = key.withUnsafeBytes { k in
            HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), label, label.count, &mac, &len)
        }
        psk = Array(mac.prefix(Int(len)))
        for ctx in [c, s] {
            guard chi_ssl_ctx_tls13_only(ctx) == 1 else {
                throw ChiError(EINVAL, "cluster.tls: this OpenSSL has no TLS 1.3: \(Self.lastError())")
            }
            SSL_CTX_set_num_tickets(ctx, 0)
            // A certificate chain longer than this is refused before it is buffered whole.
            chi_ssl_ctx_set_max_cert_list(ctx, 16 << 10)
            SSL_CTX_set_ex_data(ctx, 0, Unmanaged.passUnretained(self).toOpaque())
        }
        switch mode {
        case .certificates(let ca, let cert, let keyFile):
            for ctx in [c, s] {
                guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
                    throw ChiError(EINVAL, "cluster.tls.ca: cannot load \(ca): \(Self.lastError())")
                }
                guard SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 else {
                    throw ChiError(EINVAL, "cluster.tls.cert: cannot load \(cert): \(Self.lastError())")
                }
                guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
                    throw ChiError(EINVAL, "cluster.tls.key: cannot load \(keyFile): \(Self.lastError())")
                }
                guard SSL_CTX_check_private_key(ctx) == 1 else {
                    throw ChiError(EINVAL, "cluster.tls.key: \(keyFile) does not match \(cert)")
                }
                SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            }
        case .psk, .off:
            // The PSK is bound to SHA-256: a server choosing a SHA-384 suite would skip it
            // and fall back to certificates it does not have.
            for ctx in [c, s] { SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256") }
            SSL_CTX_set_psk_use_session_callback(c, tlsUsePSK)
            SSL_CTX_set_psk_find_session_callback(s, tlsFindPSK)
        }
    }

    deinit {
        SSL_CTX_free(client)
        SSL_CTX_free(server)
    }

    /// A session carrying the external PSK, for TLS_AES_128_GCM_SHA256.
    func pskSession(_ ssl: OpaquePointer) -> OpaquePointer? {
        let suite: [UInt8] = [0x13, 0x01]
        guard let cipher = SSL_CIPHER_find(ssl, suite), let sess = SSL_SESSION_new() else { return nil }
        guard SSL_SESSION_set1_master_key(sess, psk, psk.count) == 1,
              SSL_SESSION_set_cipher(sess, cipher) == 1,
              SSL_SESSION_set_protocol_version(sess, TLS1_3_VERSION) == 1
        else {
            SSL_SESSION_free(sess)
            return nil
        }
        return sess
    }

    static func of(_ ssl: OpaquePointer?) -> TLSContext? {
        guard let ssl, let ctx = SSL_get_SSL_CTX(ssl), let p = SSL_CTX_get_ex_data(ctx, 0) else { return nil }
        return Unmanaged<TLSContext>.fromOpaque(p).takeUnretainedValue()
    }

    /// OpenSSL's error queue as one line (emptied), or "unknown error".
    static func lastError() -> String {
        var parts: [String] = []
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            let s = String(cString: buf)
            // "error:0A000086:SSL routines::certificate verify failed" -> the reason.
            parts.append(s.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init) ?? s)
        }
        return parts.isEmpty ? "unknown error" : parts.joined(separator: "; ")
    }
}

/// Client side: offer the external PSK (SHA-256 suites only).
private func tlsUsePSK(_ ssl: OpaquePointer?, _ md: OpaquePointer?, _ id: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                       _ idlen: UnsafeMutablePointer<Int>?, _ sess: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let ctx = TLSContext.of(ssl), let ssl, let id, let idlen, let sess else { return 0 }
    if let md, md != EVP_sha256() {
        sess.pointee = nil
        return 1
    }
    guard let s = ctx.pskSession(ssl) else { return 0 }
    id.pointee = UnsafePointer(TLSContext.pskIdentityBytes)
    idlen.pointee = TLSContext.pskIdentity.count
    sess.pointee = s
    return 1
}

/// Server side: accept only our identity; the handshake then fails unless the client's
/// binder proves it holds the same key.
private func tlsFindPSK(_ ssl: OpaquePointer?, _ identity: UnsafePointer<UInt8>?, _ len: Int,
                        _ sess: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let ctx = TLSContext.of(ssl), let ssl, let sess else { return 0 }
    let want = TLSContext.pskIdentity
    guard let identity, len == want.count, memcmp(identity, want, len) == 0 else {
        sess.pointee = nil
        return 1
    }
    guard let s = ctx.pskSession(ssl) else { return 0 }
    sess.pointee = s
    return 1
}

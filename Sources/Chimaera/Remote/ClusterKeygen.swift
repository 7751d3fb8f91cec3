import COpenSSL
import Glibc

/// `chimaera cluster keygen DIR --hosts FILE`: a cluster CA and one certificate per node, for
/// `cluster.tls: {ca, cert, key}`, made with OpenSSL's libcrypto (Ed25519 keys, X.509 v3).
///
/// Writes `DIR/ca.pem`, `DIR/ca.key` (keep it off the nodes), and for node i (1-based, the
/// host list's order) `DIR/node<i>.pem` and `DIR/node<i>.key`; key files are mode 0600. Each
/// node certificate names its host as CN and subject alternative name (IP or DNS) and is
/// valid for client and server authentication. NOT done: revocation lists, intermediates.
package enum ClusterKeygen {
    /// Makes the files; returns their paths. Throws ChiError with OpenSSL's reason.
    package static func generate(dir: String, hosts: [ClusterConfig.Host], days: Int = 825) throws(ChiError) -> [String] {
        if mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw ChiError(errno, "cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        let caKey = try newKey()
        defer { EVP_PKEY_free(caKey) }
        let ca = try certificate(cn: "chimaera cluster CA", key: caKey, issuer: nil, issuerKey: caKey, days: days,
                                 extensions: [(NID_basic_constraints, "critical,CA:TRUE"),
                                              (NID_key_usage, "critical,keyCertSign,cRLSign")])
        defer { X509_free(ca) }
        var written = [try write(cert: ca, "\(dir)/ca.pem"), try write(key: caKey, "\(dir)/ca.key")]
        for (i, h) in hosts.enumerated() {
            let k = try newKey()
            defer { EVP_PKEY_free(k) }
            let isIP = h.host.contains(":") || h.host.allSatisfy { $0.isNumber || $0 == "." }
            let c = try certificate(cn: h.host, key: k, issuer: ca, issuerKey: caKey, days: days,
                                    extensions: [(NID_basic_constraints, "critical,CA:FALSE"),
                                                 (NID_key_usage, "critical,digitalSignature"),
                                                 (NID_ext_key_usage, "serverAuth,clientAuth"),
                                                 (NID_subject_alt_name, "\(isIP ? "IP" : "DNS"):\(h.host)")])
            defer { X509_free(c) }
            written.append(try write(cert: c, "\(dir)/node\(i + 1).pem"))
            written.append(try write(key: k, "\(dir)/node\(i + 1).key"))
        }
        return written
    }

    private static func newKey() throws(ChiError) -> OpaquePointer {
        guard let ctx = EVP_PKEY_CTX_new_from_name(nil, "ED25519", nil) else { throw failure("key context") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(ctx) == 1, EVP_PKEY_generate(ctx, &key) == 1, let key else { throw failure("key") }
        return key
    }

    private static func certificate(cn: String, key: OpaquePointer, issuer: OpaquePointer?, issuerKey: OpaquePointer,
                                    days: Int, extensions: [(Int32, String)]) throws(ChiError) -> OpaquePointer {
        guard let x = X509_new() else { throw failure("certificate") }
        var serial = [UInt8](repeating: 0, count: 16)
        _ = RAND_bytes(&serial, 16)
        serial[0] &= 0x7f // positive
        let bn = BN_bin2bn(serial, 16, nil)
        defer { BN_free(bn) }
        guard X509_set_version(x, 2) == 1, BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != nil,
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nil,
              X509_gmtime_adj(X509_getm_notAfter(x), days * 86400) != nil,
              X509_set_pubkey(x, key) == 1,
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, cn, -1, -1, 0) == 1,
              X509_set_issuer_name(x, X509_get_subject_name(issuer ?? x)) == 1
        else {
            X509_free(x)
            throw failure("certificate fields")
        }
        var v3 = X509V3_CTX()
        X509V3_set_ctx(&v3, issuer ?? x, x, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &v3, nid, value) else {
                X509_free(x)
                throw failure("extension \(value)")
            }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x, ext, -1) == 1 else {
                X509_free(x)
                throw failure("extension \(value)")
            }
        }
        guard X509_sign(x, issuerKey, nil) > 0 else { // Ed25519 signs without a separate digest
            X509_free(x)
            throw failure("signature")
        }
        return x
    }

    private static func write(cert: OpaquePointer, _ path: String) throws(ChiError) -> String {
        guard let bio = BIO_new_file(path, "w") else { throw failure("cannot write \(path)") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, cert) == 1 else { throw failure("cannot write \(path)") }
        return path
    }

    private static func write(key: OpaquePointer, _ path: String) throws(ChiError) -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw ChiError(errno, "cannot write \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        guard let bio = BIO_new_file(path, "w") else { throw failure("cannot write \(path)") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { throw failure("cannot write \(path)") }
        return path
    }

    private static func failure(_ what: String) -> ChiError {
        ChiError(EINVAL, "keygen: \(what): \(TLSContext.lastError())")
    }
}

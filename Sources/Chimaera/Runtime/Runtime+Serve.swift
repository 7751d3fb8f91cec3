import ChimaeraYAML
import CChimaera
import Glibc

/// What a process that runs a runtime asks for (`chi_runtime_serve`, `chi_config_resolve`).
package struct ServeRequest: Sendable {
    /// The segment; nil: `$CHIMAERA_SEGMENT`, then the config's `runtime.name`.
    package var segment: String?
    /// The config file; nil: `$CHIMAERA_CONF`, else defaults.
    package var configPath: String?
    /// A hostfile that replaces the config's cluster hosts.
    package var hostfile: String?
    /// The node id (1-based); 0 keeps the config's.
    package var nodeId = 0
    /// A file that receives the pid once the runtime serves; removed when it stops.
    package var pidFile: String?
    /// A descriptor that receives "OK\n" once serving, or the error text; closed either way.
    package var notifyFd: Int32 = -1

    package init() {}
}

extension Runtime {
    /// The configuration and segment name `request` resolves to, checked as a start would.
    ///
    /// - Throws: `ChiError` (`CHI_ECONFIG` for the config or hostfile, `EINVAL` for a bad
    ///   segment name or node id) with the message the tool prints.
    package static func resolve(_ request: ServeRequest) throws(ChiError) -> (RuntimeConfig, String) {
        var config: RuntimeConfig
        do throws(ConfigError) {
            config = try RuntimeConfig.load(path: request.configPath)
        } catch {
            throw ChiError(CInt(CHI_ECONFIG), "configuration error: \(error.description)")
        }
        if let f = request.hostfile {
            do throws(ConfigError) {
                config.cluster.hosts = try ClusterConfig.readHostfile(f, defaultPort: config.cluster.port)
                config.cluster.hostfile = f
            } catch {
                throw ChiError(CInt(CHI_ECONFIG), "hostfile: \(error.description)")
            }
        }
        if request.nodeId != 0 {
            let n = request.nodeId
            guard n >= 1, n <= max(1, config.cluster.hosts.count) else {
                throw ChiError(EINVAL, "--node-id \(n): expected a node id between 1 and \(max(1, config.cluster.hosts.count)) (the cluster's hosts)")
            }
            config.cluster.nodeId = n
        }
        let name = config.segmentName(explicit: request.segment)
        guard ModuleLoader.validName(name) else { throw ChiError(EINVAL, "invalid segment name \"\(name)\"") }
        return (config, name)
    }

    /// The resolved request as JSON: segment, the pid serving it (0: none), the cluster port,
    /// node id, whether a key is set, and the hosts with whether each is this machine.
    package static func resolvedJSON(_ request: ServeRequest) throws(ChiError) -> String {
        let (config, name) = try resolve(request)
        var j = JSONWriter()
        j.open()
        j.key("segment"); j.string(name)
        j.key("segment_path"); j.string(SharedSegment.filePath(name))
        j.key("pid"); j.int(Int(SharedSegment.livePid(of: name) ?? 0))
        j.key("port"); j.int(config.cluster.port)
        j.key("node_id"); j.int(config.cluster.nodeId)
        j.key("key_set"); j.int(config.cluster.key.isEmpty ? 0 : 1)
        let mine = Set(ClusterMap.localAddresses())
        j.key("hosts"); j.openArray()
        for h in config.cluster.hosts {
            let local = ["localhost", "127.0.0.1", "::1"].contains(h.host)
                || ClusterMap.addresses(of: h.host).contains(where: mine.contains)
            j.open()
            j.key("host"); j.string(h.host)
            j.key("port"); j.int(h.port)
            j.key("local"); j.int(local ? 1 : 0)
            j.close()
        }
        j.closeArray()
        j.close()
        return j.text
    }

    /// Runs a runtime in this process until it is stopped (by a client, SIGINT or SIGTERM).
    ///
    /// - Throws: `ChiError` if the runtime cannot start; a start that fails leaves no
    ///   segment or socket behind. Blocks the calling thread while the runtime serves.
    package static func serve(_ request: ServeRequest) throws(ChiError) {
        func report(_ s: String) {
            guard request.notifyFd >= 0 else { return }
            _ = s.withCString { write(request.notifyFd, $0, strlen($0)) }
            close(request.notifyFd)
        }
        do throws(ChiError) {
            let (config, name) = try resolve(request)
            if config.cluster.isMultiNode && config.cluster.key.isEmpty {
                throw ChiError(CInt(CHI_ECONFIG), "cluster.key (or cluster.key_file) must be set in the config: peers prove they hold it")
            }
            if let pid = SharedSegment.livePid(of: name) {
                throw ChiError(EBUSY, "segment \"\(name)\" is already served by pid \(pid); stop it with `chimaera stop --segment \(name)`")
            }
            // A daemon takes write errors as errors, from its first write on (its own segment
            // is one: `ulimit -f` applies to /dev/shm too).
            chi_ignore_write_signals()
            let rt = try Runtime(config: config, segmentName: name)
            _ = chi_install_stop_signals(rt.stopFlag)
            // The scrape endpoint reads the runtime: it stops before the runtime does.
            var metrics: MetricsServer?
            do throws(ChiError) {
                rt.internalClient = RuntimeClient(internalFor: rt, spinNs: UInt64(config.clientSpinUs) * 1000)
                try rt.start()
                if let host = config.metrics.host {
                    metrics = try MetricsServer(host: host, port: config.metrics.port) { [rt] in rt.metricsText() }
                }
            } catch {
                // A start that fails leaves nothing behind: its segment and socket go.
                metrics?.stop()
                rt.shutdown()
                throw error
            }
            if let pidFile = request.pidFile {
                let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                guard fd >= 0 else {
                    let e = errno
                    metrics?.stop()
                    rt.shutdown()
                    throw ChiError(e, "cannot write the pid file \(pidFile): \(Sys.errnoText(e))")
                }
                _ = "\(getpid())\n".withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
            let workers = rt.workers.map { "\($0.kind.rawValue)\($0.cpu >= 0 ? "@cpu\($0.cpu)" : "")" }
            print("chimaera: runtime \"\(name)\" ready: pid \(getpid()), segment \(SharedSegment.filePath(name)), workers \(workers.joined(separator: " "))")
            fflush(nil)
            report("OK\n")
            rt.waitForStop()
            metrics?.stop()
            rt.shutdown()
            if let pidFile = request.pidFile { unlink(pidFile) }
            print("chimaera: runtime \"\(name)\" stopped")
            fflush(nil)
        } catch {
            report(error.message)
            throw error
        }
    }

    /// Removes the segment and socket of `name` if no live runtime serves it.
    ///
    /// - Returns: true if a stale segment was there. - Throws: `EBUSY` if a runtime serves it.
    package static func removeStaleSegment(_ name: String) throws(ChiError) -> Bool {
        if let pid = SharedSegment.livePid(of: name) {
            throw ChiError(EBUSY, "segment \"\(name)\" is served by pid \(pid)")
        }
        let there = access(SharedSegment.filePath(name), F_OK) == 0
        if there { _ = Sys.shmUnlink(SharedSegment.shmName(name)) }
        unlink(SharedSegment.socketPath(name))
        return there
    }
}

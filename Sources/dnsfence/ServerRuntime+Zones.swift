import DNSFenceConfig
import DNSFencePolicy
import DNSFenceTransfer
import DNSFenceWire

extension ServerRuntime {
    /// Starts the secondaries: each completed transfer is applied like a reload.
    func startTransfers() {
        zones.start { [weak self] zone, content, changes, commit in
            guard let self else { return "shutting down" }
            return await self.exclusively {
                await self.applyZone(zone, content: content, changes: changes, commit: commit)
            }
        }
    }

    /// Puts a transfer of `zone` into service (`content` nil: the zones as they stand, after
    /// an expiry): the policies patched with an IXFR's `changes` when they can be, else compiled
    /// again from the configuration serving; swapped in; what they no longer allow revoked. Nil
    /// on success, else why nothing changed.
    func applyZone(_ zone: String, content: ZoneContent?, changes: ZoneChanges?, commit: @escaping @Sendable () -> Void)
        async -> String?
    {
        let started = ContinuousClock.now
        let compiled: CompiledConfiguration
        var event = "zone applied"
        do {
            if let changes, let patched = try patched(zone, with: changes) {
                compiled = patched
                event = "zone patched"
            } else {
                let content = content ?? changes.flatMap { zones.preview(zone, $0.delta) }
                compiled = try ConfigurationLoader().compile(
                    current.configuration, configPath: configPath, overrides: overrides,
                    zones: OverlaidZones(base: zones, zone: zone, content: content))
            }
        } catch {
            logger.error("transfer not applied", metadata: ["zone": "\(zone)", "errors": "\(error)"])
            return "\(error)"
        }
        let outcome = await install(compiled, started: started, onSwap: commit, event: event)
        return outcome.succeeded ? nil : outcome.messages.joined(separator: "; ")
    }

    /// The configuration serving with an IXFR's changes to `zone` patched into the policies
    /// using it (their rule indexes copied and changed, not built again), or nil when one of
    /// them has other zones or allowed names (precedence between them needs a whole compile)
    /// or fails closed now. The changed owners' rules are read from their records now, with
    /// the RPZ reader's checks; their rule ids read `transfer:ZONE@SERIAL:LINE`.
    func patched(_ zone: String, with changes: ZoneChanges) throws -> CompiledConfiguration? {
        let path = ZoneTransferSource.pathPrefix + zone
        let users = current.configuration.policies.filter { $0.zones.contains(path) }
        guard !users.isEmpty,
            users.allSatisfy({ $0.zones == [path] && $0.inlineAllow.isEmpty && current.unavailable[$0.name] == nil })
        else { return nil }
        var text = changes.soaLine + "\n"
        var removing: [(name: DNSName, wildcard: Bool)] = []
        let apex = try DNSName(zone)
        for (owner, lines) in changes.owners.sorted(by: { $0.key < $1.key }) {
            if !lines.isEmpty {
                text += lines.joined(separator: "\n") + "\n"
                continue
            }
            // An owner that is no pattern never made a rule: nothing to remove.
            if let pattern = try? RuleParser.rpzPattern(owner: try DNSName(owner), apex: apex) {
                removing.append(pattern)
            }
        }
        let setting = try RuleParser.rules(
            from: PolicySource(file: "\(path)@\(changes.serial)", text: text, format: .rpz))
        let compiler = PolicyCompiler(publicSuffixes: ConfigurationLoader.publicSuffixes)
        var warnings: [ConfigDiagnostic] = []
        var entries: [ClientPolicySelector.Entry] = []
        for policy in current.configuration.policies {
            guard let entry = current.selector.entries[policy.name] else { continue }
            guard users.contains(where: { $0.name == policy.name }) else {
                entries.append(entry)
                continue
            }
            let output = compiler.patch(
                entry.policy, setting: setting, removing: removing, auditedPatterns: policy.auditedRules,
                budget: policy.budget, ruleBudgets: policy.ruleBudgets)
            warnings += output.warnings.map {
                ConfigDiagnostic(file: $0.file, line: $0.line, severity: .warning, message: $0.message)
            }
            entries.append(ClientPolicySelector.Entry(policy: output.policy, clients: entry.clients))
        }
        var compiled = current
        compiled.selector = ClientPolicySelector(entries)
        compiled.warnings = warnings
        return compiled
    }
}

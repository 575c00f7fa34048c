// Stateless request checks done before a request is logged, in etcd's order and with its errors (v3rpc/key.go).

enum RequestChecks {
    static func check(_ r: RangeRequest) throws(KVError) {
        if r.key.isEmpty { throw .emptyKey }
    }

    static func check(_ r: PutRequest) throws(KVError) {
        if r.key.isEmpty { throw .emptyKey }
        if r.ignoreValue && !r.value.isEmpty { throw .valueProvided }
        if r.ignoreLease && r.lease != 0 { throw .leaseProvided }
    }

    static func check(_ r: DeleteRangeRequest) throws(KVError) {
        if r.key.isEmpty { throw .emptyKey }
    }

    /// etcd's checkTxnRequest followed by checkIntervals on both branches.
    static func check(_ r: TxnRequest, maxTxnOps: Int) throws(KVError) {
        try checkTxn(r, maxTxnOps: maxTxnOps)
        _ = try intervals(r.success)
        _ = try intervals(r.failure)
    }

    /// The op budget shrinks with nesting: a nested txn may use what its parent's widest list
    /// left over, as etcd computes it.
    private static func checkTxn(_ r: TxnRequest, maxTxnOps: Int) throws(KVError) {
        let opc = max(r.compare.count, r.success.count, r.failure.count)
        if opc > maxTxnOps { throw .tooManyOps }
        for c in r.compare where c.key.isEmpty { throw .emptyKey }
        for op in r.success { try checkOp(op, maxTxnOps: maxTxnOps - opc) }
        for op in r.failure { try checkOp(op, maxTxnOps: maxTxnOps - opc) }
    }

    private static func checkOp(_ op: RequestOp, maxTxnOps: Int) throws(KVError) {
        switch op {
        case .range(let q): try check(q)
        case .put(let p): try check(p)
        case .deleteRange(let d): try check(d)
        case .txn(let t): try checkTxn(t, maxTxnOps: maxTxnOps)
        }
    }

    /// A delete's key interval as etcd's duplicate check sees it. etcd builds it with plain
    /// string bounds, where range_end "\0" is NOT "to the end" (only "" is), so a from-key
    /// delete contains no point there; we keep that quirk so the same txns are accepted.
    private struct Interval {
        var begin: [UInt8]
        var end: [UInt8]?  // nil: the single point `begin`

        func contains(_ key: [UInt8]) -> Bool {
            guard let end else { return key == begin }
            return compareBytes(begin, key) <= 0 && compareBytes(key, end) < 0
        }
    }

    /// etcd's checkIntervals: within one branch (and nested txns), no key may be put twice or
    /// both put and deleted; deletes may overlap each other; a nested txn's then/else may put
    /// the same key since only one of them runs.
    private static func intervals(_ ops: [RequestOp]) throws(KVError) -> (puts: Set<[UInt8]>, dels: [Interval]) {
        var dels: [Interval] = []
        for op in ops {
            if case .deleteRange(let d) = op {
                dels.append(Interval(begin: d.key, end: d.rangeEnd.isEmpty ? nil : d.rangeEnd))
            }
        }
        func deleted(_ k: [UInt8]) -> Bool { dels.contains { $0.contains(k) } }
        var puts = Set<[UInt8]>()
        for op in ops {
            guard case .txn(let t) = op else { continue }
            let then = try intervals(t.success)
            let otherwise = try intervals(t.failure)
            for k in then.puts {
                if puts.contains(k) || deleted(k) { throw .duplicateKey }
                puts.insert(k)
            }
            for k in otherwise.puts {
                if puts.contains(k) && !then.puts.contains(k) { throw .duplicateKey }
                if deleted(k) { throw .duplicateKey }
                puts.insert(k)
            }
            dels.append(contentsOf: then.dels)
            dels.append(contentsOf: otherwise.dels)
        }
        for op in ops {
            guard case .put(let p) = op else { continue }
            if puts.contains(p.key) || deleted(p.key) { throw .duplicateKey }
            puts.insert(p.key)
        }
        return (puts, dels)
    }

    /// etcd's isTxnReadonly: every op of both branches is a range (a nested txn counts as a
    /// write, even if it only reads, exactly as etcd decides).
    static func isReadOnly(_ r: TxnRequest) -> Bool {
        func isRange(_ op: RequestOp) -> Bool {
            if case .range = op { return true }
            return false
        }
        return r.success.allSatisfy(isRange) && r.failure.allSatisfy(isRange)
    }

    /// Bytes a request may add (etcd's quota cost): only puts and lease grants cost anything.
    static func cost(_ command: Command) -> Int64 {
        switch command {
        case .put(let p): return Int64(p.key.count + p.value.count) + KVStateMachine.versionOverhead
        case .txn(let t): return cost(t)
        case .leaseGrant: return KVStateMachine.leaseOverhead
        case .deleteRange, .compact, .leaseRevoke, .alarm: return 0
        }
    }

    /// etcd's costTxn: the larger branch's puts, nested txns included.
    private static func cost(_ t: TxnRequest) -> Int64 {
        func branch(_ ops: [RequestOp]) -> Int64 {
            var total: Int64 = 0
            for op in ops {
                switch op {
                case .put(let p): total += Int64(p.key.count + p.value.count) + KVStateMachine.versionOverhead
                case .txn(let n): total += cost(n)
                case .range, .deleteRange: break
                }
            }
            return total
        }
        return max(branch(t.success), branch(t.failure))
    }
}

/// What one node believes about another (or itself): SWIM's member record.
///
/// The states are ordered for one incarnation (alive < suspected < dead < left), and an
/// update replaces a record only when its `key` is larger: a higher incarnation, or the same
/// incarnation and a later state. Every node applies the same rule, so any two nodes that
/// have seen the same updates hold the same records whatever the order they saw them in.
package enum MemberState: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case alive = 0
    /// Missed a probe (direct and indirect); still used, until the suspicion timeout.
    case suspected = 1
    /// Suspected for the whole suspicion timeout without refuting it.
    case dead = 2
    /// Left on purpose (a clean stop).
    case left = 3

    package var description: String {
        switch self {
        case .alive: "alive"
        case .suspected: "suspected"
        case .dead: "dead"
        case .left: "left"
        }
    }
}

/// One node's claim about a member: the unit of gossip and of full-state syncs.
package struct MemberUpdate: Equatable, Sendable {
    package var node: UInt32
    package var incarnation: UInt64
    package var state: MemberState

    package init(node: UInt32, incarnation: UInt64, state: MemberState) {
        self.node = node
        self.incarnation = incarnation
        self.state = state
    }

    /// The precedence of this claim: later states of one incarnation, then higher
    /// incarnations, win. Incarnations are bounded on decode so this cannot overflow.
    package var key: UInt64 { incarnation &* 4 &+ UInt64(state.rawValue) }
}

/// A member as this node sees it: the winning claim and when this node adopted it.
package struct Member: Equatable, Sendable {
    package var node: UInt32
    package var incarnation: UInt64
    package var state: MemberState
    /// This node's clock (monotonic ns) when the state last changed here.
    package var sinceNs: UInt64

    package var update: MemberUpdate { MemberUpdate(node: node, incarnation: incarnation, state: state) }
}

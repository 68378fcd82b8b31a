package broker

// coordinator returns the group coordinator of a cluster node.
func (n *clusterNode) coordinator() (*coordinator, error) {
	return nil, errorf(ErrInvalidRequest, "consumer groups are served by single nodes only so far")
}

// offsetsView returns the committed offsets as this node's copy of the
// controller state has them.
func (n *clusterNode) offsetsView() offsetStore { return nil }

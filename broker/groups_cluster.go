package broker

// coordinator returns the group coordinator of a cluster node.
func (n *clusterNode) coordinator() (*coordinator, error) {
	return nil, errorf(ErrInvalidRequest, "consumer groups are served by single nodes only so far")
}

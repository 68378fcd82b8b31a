package consumergroup

import (
	"slices"
)

// subscription is one member's topics, sorted.
type subscription struct {
	id     string
	topics []string
}

// assignRange gives each member a contiguous range of each topic it
// subscribes to: members of the topic sorted by id, each gets n/k
// partitions and the first n%k one more.
func assignRange(members []subscription, parts []TopicPartition) map[TopicPartition]string {
	out := map[TopicPartition]string{}
	byTopic := map[string][]TopicPartition{}
	for _, tp := range parts {
		byTopic[tp.Topic] = append(byTopic[tp.Topic], tp)
	}
	for topic, tps := range byTopic {
		var subs []string
		for _, m := range members {
			if slices.Contains(m.topics, topic) {
				subs = append(subs, m.id)
			}
		}
		if len(subs) == 0 {
			continue
		}
		n, k := len(tps), len(subs)
		i := 0
		for j, id := range subs {
			size := n / k
			if j < n%k {
				size++
			}
			for _, tp := range tps[i : i+size] {
				out[tp] = id
			}
			i += size
		}
	}
	return out
}

// assignSticky keeps each partition with its previous member where that
// member still subscribes to the topic, gives the rest to the eligible
// member with the fewest, then moves partitions one at a time from the
// fullest member to an eligible one with at least two fewer until no such
// move exists. Every move lowers the sum of squared counts, so it ends; at
// the end no member can take a partition from one with two more, which for
// members with the same subscriptions means counts differ by at most one.
func assignSticky(members []subscription, parts []TopicPartition, prev map[TopicPartition]string) map[TopicPartition]string {
	out := map[TopicPartition]string{}
	count := map[string]int{}
	eligible := func(id, topic string) bool {
		for _, m := range members {
			if m.id == id {
				return slices.Contains(m.topics, topic)
			}
		}
		return false
	}
	for _, tp := range parts {
		if id, ok := prev[tp]; ok && eligible(id, tp.Topic) {
			out[tp] = id
			count[id]++
		}
	}
	// least returns the eligible member for topic with the fewest
	// partitions (ties to the smallest id), skipping one, or "".
	least := func(topic, skip string) string {
		best := ""
		for _, m := range members {
			if m.id == skip || !slices.Contains(m.topics, topic) {
				continue
			}
			if best == "" || count[m.id] < count[best] {
				best = m.id
			}
		}
		return best
	}
	for _, tp := range parts {
		if _, ok := out[tp]; ok {
			continue
		}
		if id := least(tp.Topic, ""); id != "" {
			out[tp] = id
			count[id]++
		}
	}
	for {
		moved := false
		// Members by count, fullest first, ties by id.
		order := make([]subscription, len(members))
		copy(order, members)
		slices.SortStableFunc(order, func(a, b subscription) int { return count[b.id] - count[a.id] })
		for _, from := range order {
			// Its partitions, highest first, so the low ones stay put.
			var mine []TopicPartition
			for _, tp := range parts {
				if out[tp] == from.id {
					mine = append(mine, tp)
				}
			}
			for i := len(mine) - 1; i >= 0 && !moved; i-- {
				tp := mine[i]
				to := least(tp.Topic, from.id)
				if to != "" && count[to] < count[from.id]-1 {
					out[tp] = to
					count[to]++
					count[from.id]--
					moved = true
				}
			}
			if moved {
				break
			}
		}
		if !moved {
			return out
		}
	}
}

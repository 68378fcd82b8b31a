package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ScrapeFsyncs sums the runnel_*fsyncs_total counters (write-ahead log and
// raft log fsyncs) served at each of the /metrics URLs.
func ScrapeFsyncs(ctx context.Context, urls []string) (int64, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	var total int64
	for _, u := range urls {
		n, err := scrapeFsyncs(ctx, hc, u)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// scrapeFsyncs sums the runnel_*fsyncs_total counters of one node.
func scrapeFsyncs(ctx context.Context, hc *http.Client, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "runnel_") {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		if !strings.HasSuffix(name, "fsyncs_total") {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err == nil {
			total += v
		}
	}
	return int64(total), sc.Err()
}

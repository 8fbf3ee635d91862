package eventstore

import "context"

// countPage is the page size of CountLog's fallback.
const countPage = MaxBatchSize

// CountLog counts the events of r's log after a position, filtered and
// capped like LogCounter.CountLog. A store that implements LogCounter
// counts for itself; any other is read page by page, which costs what
// reading the events costs, so callers cap the count (opts.Limit) when
// they only need to know the backlog is large.
func CountLog(ctx context.Context, r LogReader, after Position, opts ReadLogOptions) (int64, error) {
	if c, ok := r.(LogCounter); ok {
		return c.CountLog(ctx, after, opts)
	}
	var n int64
	for {
		page := countPage
		if opts.Limit > 0 {
			page = min(page, opts.Limit-int(n))
			if page <= 0 {
				return n, nil
			}
		}
		events, err := r.ReadLog(ctx, after, ReadLogOptions{Limit: page, Types: opts.Types, Categories: opts.Categories, Since: opts.Since})
		if err != nil {
			return n, err
		}
		n += int64(len(events))
		if len(events) < page {
			return n, nil
		}
		after = events[len(events)-1].Position
	}
}

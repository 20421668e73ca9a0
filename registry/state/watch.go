package state

// IndexWatch returns a channel that is closed when a command is applied
// after this view (the applied index moves on), or nil if the view cannot
// be watched. A snapshot restore swaps the whole state: the channel of the
// old state is never closed, so a watcher also re-reads now and then.
func (r *Reader) IndexWatch() <-chan struct{} {
	ch, _, err := r.txn.FirstWatch(tableMeta, "id", metaKeyIndex)
	if err != nil {
		return nil
	}
	return ch
}

package pgtemp

import "sync"

// perAdmin holds one *T per admin URL (per server), made on first use.
type perAdmin[T any] struct {
	mu sync.Mutex
	m  map[string]*T
}

// get returns admin's *T, made by fresh the first time.
func (p *perAdmin[T]) get(admin string, fresh func() *T) *T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*T{}
	}
	v := p.m[admin]
	if v == nil {
		v = fresh()
		p.m[admin] = v
	}
	return v
}

// takeAll returns every *T by admin URL and forgets them.
func (p *perAdmin[T]) takeAll() map[string]*T {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := p.m
	p.m = nil
	return all
}

package pairs

// A and B use each other: a both-way pair.
type A struct{ n int }

func (a A) Next() B { return B{a: a} }

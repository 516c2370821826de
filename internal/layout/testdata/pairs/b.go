package pairs

type B struct{ a A }

func (b B) Count() int { return b.a.n }

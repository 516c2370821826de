package nar

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// RealisationPrefix is where a binary cache keeps realisations: the
// outputs of content-addressed derivations (ca-derivations), one
// realisations/<id>.doi per derivation output.
const RealisationPrefix = "realisations/"

// Realisation says which store path a derivation output was built to.
// ID is "<hash of the derivation modulo>!<output name>", the hash as Nix's
// database keeps it ("sha256:" + 64 hex digits). OutPath and the values of
// DependentRealisations are base names (no /nix/store/).
type Realisation struct {
	ID                    string
	OutPath               string
	Signatures            []string
	DependentRealisations map[string]string // ID → OutPath
}

// Key is the object key of r in a binary cache.
func (r *Realisation) Key() string { return RealisationPrefix + r.ID + ".doi" }

// MarshalJSON writes r as Nix 2.8's Realisation::toJSON().dump() does:
// keys sorted (dependentRealisations, id, outPath, signatures), no
// spaces, signatures in the order Nix keeps them (sorted).
func (r *Realisation) MarshalJSON() ([]byte, error) {
	b := append(r.fingerprint(), ',')
	b = append(b, `"signatures":`...)
	b = append(b, '[')
	for i, s := range slices.Sorted(slices.Values(r.Signatures)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, "]}"...), nil
}

// fingerprint is the JSON without signatures and without its closing
// brace.
func (r *Realisation) fingerprint() []byte {
	b := []byte(`{"dependentRealisations":{`)
	for i, id := range slices.Sorted(mapKeys(r.DependentRealisations)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, id)
		b = append(b, ':')
		b = appendJSONString(b, r.DependentRealisations[id])
	}
	b = append(b, `},"id":`...)
	b = appendJSONString(b, r.ID)
	b = append(b, `,"outPath":`...)
	return appendJSONString(b, r.OutPath)
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Fingerprint is what a realisation's signatures sign: its JSON without
// the signatures (Nix's Realisation::fingerprint).
func (r *Realisation) Fingerprint() []byte { return append(r.fingerprint(), '}') }

// Sign adds k's signature, replacing an older one by the same key name.
func (r *Realisation) Sign(k *SecretKey) {
	sig := k.Sign(r.Fingerprint())
	r.Signatures = slices.DeleteFunc(r.Signatures, func(s string) bool { return strings.HasPrefix(s, k.Name+":") })
	r.Signatures = append(r.Signatures, sig)
}

// ParseRealisation parses a .doi file as Nix writes it, checking the ID's
// form and that the paths are base names.
func ParseRealisation(b []byte) (*Realisation, error) {
	var j struct {
		ID                    *string           `json:"id"`
		OutPath               *string           `json:"outPath"`
		Signatures            []string          `json:"signatures"`
		DependentRealisations map[string]string `json:"dependentRealisations"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("nar: realisation: %w", err)
	}
	if j.ID == nil || j.OutPath == nil {
		return nil, errors.New("nar: realisation: needs id and outPath")
	}
	r := &Realisation{ID: *j.ID, OutPath: *j.OutPath, Signatures: j.Signatures, DependentRealisations: j.DependentRealisations}
	if err := checkRealisationID(r.ID); err != nil {
		return nil, err
	}
	if _, err := ParseBaseName(r.OutPath); err != nil {
		return nil, fmt.Errorf("nar: realisation outPath: %w", err)
	}
	for id, p := range r.DependentRealisations {
		if err := checkRealisationID(id); err != nil {
			return nil, err
		}
		if _, err := ParseBaseName(p); err != nil {
			return nil, fmt.Errorf("nar: realisation dependency: %w", err)
		}
	}
	return r, nil
}

func checkRealisationID(id string) error {
	h, out, ok := strings.Cut(id, "!")
	hex, isSHA := strings.CutPrefix(h, "sha256:")
	if !ok || !isSHA || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" || out == "" || strings.ContainsAny(out, "!/") {
		return fmt.Errorf("nar: realisation id %q: want sha256:<64 hex>!<output>", id)
	}
	return nil
}

package smtpd

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// The decoy written out is a bcrypt hash at the cost users' hashes are
// made with, so that a login for an unknown name costs what a known one
// does.
func TestDecoyIsABcryptHashAtTheDefaultCost(t *testing.T) {
	if cost, err := bcrypt.Cost(decoy); err != nil || cost != bcrypt.DefaultCost {
		t.Fatalf("decoy: cost %d, %v; want %d", cost, err, bcrypt.DefaultCost)
	}
	if err := bcrypt.CompareHashAndPassword(decoy, []byte("mailflow decoy")); err != nil {
		t.Fatal(err)
	}
}

package tlsconf

import "testing"

func TestCheckEndpoint(t *testing.T) {
	cases := []struct {
		address, mode, def, want string
		bad                      bool
	}{
		{"mail.example.com:995", "", "implicit", "implicit", false},
		{"mail.example.com:587", "", "starttls", "starttls", false},
		{"127.0.0.1:110", "none", "implicit", "none", false},
		{"[::1]:143", "starttls", "implicit", "starttls", false},
		{"", "", "implicit", "", true},
		{"mail.example.com", "", "implicit", "", true},
		{"mail.example.com:25", "ssl", "starttls", "", true},
	}
	for _, c := range cases {
		got, err := CheckEndpoint(c.address, c.mode, c.def)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("CheckEndpoint(%q, %q, %q) = %q, %v", c.address, c.mode, c.def, got, err)
		}
	}
}

package probe

import "testing"

func TestClassifyTCP(t *testing.T) {
	tests := []struct {
		flags Flags
		scan  Scan
		str   string
	}{
		{SYN, ScanSYN, "S"},
		{SYN | ECE | CWR, ScanSYN, "SEC"},
		{FIN, ScanFIN, "F"},
		{0, ScanNull, ""},
		{FIN | PSH | URG, ScanXmas, "FPU"},
		{SYN | FIN, ScanOther, "FS"},
		{FIN | PSH, ScanOther, "FP"},
		{URG, ScanOther, "U"},
		{SYN | ACK, ScanNone, "SA"},
		{ACK, ScanNone, "A"},
		{RST, ScanNone, "R"},
		{FIN | SYN | RST | PSH | ACK | URG | ECE | CWR, ScanNone, "FSRPAUEC"},
		{FIN | PSH | URG | SYN, ScanOther, "FSPU"},
	}
	for _, tt := range tests {
		if got := ClassifyTCP(tt.flags); got != tt.scan {
			t.Errorf("ClassifyTCP(%s) = %v, want %v", tt.str, got, tt.scan)
		}
		if got := tt.flags.String(); got != tt.str {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint8(tt.flags), got, tt.str)
		}
	}
}

func TestNames(t *testing.T) {
	if ScanXmas.String() != "xmas" || ScanUDP.String() != "udp" || Scan(200).String() != "none" {
		t.Error("scan names")
	}
	if ProtoTCP.String() != "tcp" || ProtoUDP.String() != "udp" || ProtoNone.String() != "none" {
		t.Error("proto names")
	}
}

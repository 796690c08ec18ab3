package memory_test

import (
	"testing"

	"rcsd/storage"
	"rcsd/storage/memory"
	"rcsd/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Store { return memory.New() })
}

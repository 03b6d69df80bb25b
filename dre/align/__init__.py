"""Face alignment: landmark back-ends, the FFHQ recipe and the album runner."""

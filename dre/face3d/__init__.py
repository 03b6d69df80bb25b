"""3D face reconstruction: FLAME, DECA/EMOCA encoders, DECA crop, physical-buffer renderer."""

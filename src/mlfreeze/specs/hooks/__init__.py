"""mlfreeze's PyInstaller hooks. The freeze stage passes this folder as ``hookspath``; they are
not registered globally, so another project's PyInstaller runs never pick them up."""

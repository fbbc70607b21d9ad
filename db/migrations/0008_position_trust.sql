SELECT 1; -- reserved: position trust (fix-to-fix speed, clamped fix time)

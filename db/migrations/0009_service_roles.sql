SELECT 1; -- reserved: least-privilege service roles

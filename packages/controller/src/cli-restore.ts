import { UsageError, type Io } from './cli.js';
export async function restoreCommand(_a: string[], _io: Io): Promise<number> { throw new UsageError('restore: not implemented yet'); }
